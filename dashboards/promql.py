"""PromQL fragments the dashboards share: label filters from the template variables, quantiles, ratios.

Template variables are multi-value with All = `.*`, so a filter like `site=~"$site"` also matches series
that lack the label (an enrichment label switched off in the exporter's configuration).
"""

from __future__ import annotations

__all__ = [
    "ACCOUNT",
    "ACCOUNT_PRODUCT",
    "PHONE",
    "QOS",
    "avg_from",
    "labels",
    "quantile",
    "ratio",
]

QOS = 'account=~"$account", product=~"$product", site=~"$site"'  # families with enrichment labels
ACCOUNT_PRODUCT = 'account=~"$account", product=~"$product"'  # active meetings, session counts
ACCOUNT = 'account=~"$account"'
PHONE = 'account=~"$account", leg=~"$leg", direction=~"$direction"'


def labels(*matchers: str) -> str:
    """`{a, b}` from label matchers, skipping empty ones."""
    return "{" + ", ".join(m for m in matchers if m) + "}"


def quantile(q: float, buckets: str, by: str = "") -> str:
    """`histogram_quantile` over bucket rates (or recorded bucket rates) summed by `by` and `le`."""
    keep = f"{by}, le" if by else "le"
    return f"histogram_quantile({q:g}, sum by ({keep}) ({buckets}))"


def ratio(part: str, whole: str, by: str = "") -> str:
    """sum(part) / sum(whole) by `by`; a missing part (no matching series yet) counts as 0."""
    if by:
        return f"(sum by ({by}) ({part}) or 0 * sum by ({by}) ({whole}))\n/\nsum by ({by}) ({whole})"
    return f"(sum({part}) or vector(0))\n/\nsum({whole})"


def avg_from(sum_rate: str, count_rate: str, by: str = "") -> str:
    """Average of a histogram from the rates of its `_sum` and `_count`."""
    if by:
        return f"sum by ({by}) ({sum_rate})\n/\nsum by ({by}) ({count_rate})"
    return f"sum({sum_rate})\n/\nsum({count_rate})"
