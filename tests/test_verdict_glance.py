"""The Verdict chapter's first screen: one line per claim, read from the registry."""

from __future__ import annotations

import re

import pytest

from maskdiff_tutor import claims, verdict_glance


def test_every_claim_has_a_short_headline():
    assert set(verdict_glance.HEADLINES) == set(claims.CLAIMS)
    long = {n: h for n, h in verdict_glance.HEADLINES.items() if len(h) > 50}
    assert not long, f"headlines must fit one line on a phone (50 characters): {long}"


def test_the_glance_reads_the_registry():
    glance = verdict_glance.glance()
    assert glance.counts == claims.verdict_counts()
    assert [(r.number, r.verdict) for r in glance.rows] == [(c.number, c.verdict) for c in claims.CLAIMS.values()]
    assert all(r.scope == " + ".join(claims.CLAIMS[r.number].scope) for r in glance.rows)


def test_each_line_carries_its_verdict_as_a_badge_and_a_word():
    page = verdict_glance.glance()._repr_html_()
    lines = re.findall(r"<li>(.*?)</li>", page)
    assert len(lines) == len(claims.CLAIMS)
    for line, c in zip(lines, claims.CLAIMS.values()):
        badge = verdict_glance.BADGES[c.verdict]
        assert f'class="verdict-badge verdict-{badge}">{c.verdict}</span>' in line


def test_a_verdict_without_a_badge_is_caught():
    assert set(verdict_glance.BADGES) == set(claims.VERDICTS)


def test_missing_headline_is_refused(monkeypatch):
    monkeypatch.delitem(verdict_glance.HEADLINES, 19)
    with pytest.raises(ValueError, match="HEADLINES must name every claim"):
        verdict_glance.glance()
