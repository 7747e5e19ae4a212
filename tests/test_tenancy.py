"""qss_exporter/tenancy.py: each credential speaks for its own account and its sub-accounts only."""

from __future__ import annotations

from qss_exporter.tenancy import UNDECLARED_MAX, Tenancy, Tenant

ACME = Tenant("acme", "A" * 22, ("SUB1", "SUB2"))
GLOBEX = Tenant("globex", "G" * 22)
MASTER = Tenant("msp", "M" * 22, ("DECLARED",), undeclared_sub_accounts=True)


def test_an_account_and_its_declared_sub_accounts_are_accepted_and_labelled() -> None:
    tenancy = Tenancy([ACME, GLOBEX])
    for account_id in ("A" * 22, "SUB1", "SUB2"):
        assert tenancy.check(("acme",), account_id) is None
    assert [tenancy.label(account_id) for account_id in ("A" * 22, "SUB1", "G" * 22)] == ["acme", "SUB1", "globex"]


def test_another_tenants_account_is_a_mismatch_and_an_unknown_one_is_refused() -> None:
    tenancy = Tenancy([ACME, GLOBEX])
    assert tenancy.check(("globex",), "A" * 22) == "account_mismatch"
    assert tenancy.check(("globex",), "SUB1") == "account_mismatch"
    assert tenancy.check(("acme",), "Z" * 22) == "unknown_account"
    assert tenancy.label("Z" * 22) is None
    assert tenancy.check(("acme", "globex"), "G" * 22) is None  # a secret two entries share speaks for both


def test_undeclared_sub_accounts_are_an_opt_in_labelled_as_the_master_and_bounded() -> None:
    tenancy = Tenancy([ACME, MASTER])
    assert tenancy.check(("acme",), "NEW1") == "unknown_account"  # acme did not opt in
    assert tenancy.check(("msp",), "NEW1") is None
    assert tenancy.label("NEW1") == "msp"
    assert tenancy.check(("acme",), "NEW1") == "account_mismatch"  # learned: msp's from now on
    assert tenancy.check(("msp",), "x" * 65) == "unknown_account"  # not a Zoom account id
    assert tenancy.check(("msp",), "bad id!") == "unknown_account"
    for n in range(UNDECLARED_MAX):
        tenancy.check(("msp",), f"S{n}")
    assert tenancy.undeclared == UNDECLARED_MAX
    assert tenancy.check(("msp",), "ONE-TOO-MANY") == "unknown_account"
    assert tenancy.check(("msp",), "NEW1") is None  # those already known keep working


def test_a_reload_keeps_the_learned_sub_accounts_whose_master_still_accepts_them() -> None:
    tenancy = Tenancy([ACME, MASTER])
    for account_id in ("LEARNED1", "LEARNED2", "DECLARED2"):
        assert tenancy.check(("msp",), account_id) is None
    # msp now declares DECLARED2 (its own label from now on); a new account joins; acme is unchanged.
    msp = Tenant("msp", "M" * 22, ("DECLARED", "DECLARED2"), undeclared_sub_accounts=True)
    reloaded = tenancy.reconfigured([ACME, msp, GLOBEX])
    assert [reloaded.label(a) for a in ("LEARNED1", "LEARNED2", "DECLARED2", "G" * 22)] == [
        "msp",
        "msp",
        "DECLARED2",
        "globex",
    ]
    assert reloaded.undeclared == 2
    assert reloaded.check(("acme",), "LEARNED1") == "account_mismatch"  # still msp's
    # msp no longer accepts undeclared ids: what it learned is forgotten and refused.
    closed = reloaded.reconfigured([ACME, Tenant("msp", "M" * 22, ("DECLARED",))])
    assert closed.undeclared == 0
    assert closed.check(("msp",), "LEARNED1") == "unknown_account"
    assert tenancy.label("LEARNED1") == "msp"  # the running table is never changed in place
