"""Detail mode: which meetings and participants get series of their own, what those hold, and when they go.

Selection is an allowlist (account user ids or emails, matched by keyed hash) and/or the worst N
participants and meetings by a score, re-ranked on a timer every interval. The series are computed
from the tables when rendered (callback families): a leave removes one table entry and nothing in
the store goes stale. A hard cap bounds the exposed series and counts what it refused. Knows
records and the store's `Sample`; not HTTP, not the configuration file. The modules, by job:

    tables.py     the settings and one entry per tracked participant and meeting
    selection.py  who is shown: the allowlist, the worst-N ranking and the cap
    context.py    what is known of each meeting: number, topic, names, and when it is forgotten
    series.py     the detail families, rendered from the tables at each scrape or export
    tracker.py    records in: the participants' table, leaves and expiry; owns the others
"""

from qss_exporter.detail.selection import SCORES
from qss_exporter.detail.tables import GRADE_VALUES, MEETING_SERIES, DetailSettings
from qss_exporter.detail.tracker import DetailTracker

__all__ = ["GRADE_VALUES", "MEETING_SERIES", "SCORES", "DetailSettings", "DetailTracker"]
