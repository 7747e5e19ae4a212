"""`qss-exporter demo`: a simulated organisation that is not a source of real data.

organisation.py  the organisation: accounts, sites, people, networks, incidents (pure data)
simulator.py     its Zoom traffic as webhook bodies, in simulated time (deterministic, no I/O)
driver.py        the demo's configuration, and the events signed and POSTed to the agent's own webhook
"""
