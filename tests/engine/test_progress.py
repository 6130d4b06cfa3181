"""Progress of long steps: a bar with an ETA for a person at a terminal, plain
log lines for redirected output."""

from __future__ import annotations

import io
import logging

from ftk import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_with_the_time_left(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ftk")
    monkeypatch.delenv("CI", raising=False)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert list(progress.track(range(4), 4, "Scoring")) == [0, 1, 2, 3]
    shown = terminal.getvalue()
    assert shown.count("\r") == 4 and shown.endswith("\n")
    assert "Scoring [" in shown and "] 4/4  ETA 0:00" in shown and "2/4  ETA" in shown
    assert "Scoring: 4 batches done in" in caplog.text


def test_redirected_output_gets_plain_lines(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ftk")
    redirected = io.StringIO()
    monkeypatch.setattr("sys.stderr", redirected)
    assert list(progress.track(iter("abc"), 3, "Caching")) == ["a", "b", "c"]
    assert "\r" not in redirected.getvalue() and "ETA" not in redirected.getvalue()
    assert "Caching: 3 batches to do ..." in caplog.text
    assert "Caching: 3 batches done in" in caplog.text


def test_ci_logs_get_plain_lines_even_on_a_terminal(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ftk")
    monkeypatch.setenv("CI", "true")
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    list(progress.track(range(2), 2, "Scoring"))
    assert "\r" not in terminal.getvalue()


def test_a_silenced_logger_shows_no_bar(monkeypatch):
    logging.getLogger("ftk").setLevel(logging.WARNING)
    try:
        terminal = Terminal()
        monkeypatch.setattr("sys.stderr", terminal)
        list(progress.track(range(3), 3, "Scoring"))
        assert "\r" not in terminal.getvalue() and "ETA" not in terminal.getvalue()
    finally:
        logging.getLogger("ftk").setLevel(logging.NOTSET)


def test_timed_steps_say_how_long_they_took(caplog):
    caplog.set_level(logging.INFO, logger="ftk")
    with progress.timed("Writing the export"):
        pass
    assert "Writing the export ..." in caplog.text
    assert "Writing the export: done in 0.0 s." in caplog.text
