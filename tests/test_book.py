import re

import tlcourse
from tlcourse.book import last_executed, run_info


def test_run_info_records_versions_and_time():
    info = run_info()
    assert re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", info["date"])
    assert info["seconds"] >= 0 and info["torch"] and info["tlcourse"] == tlcourse.__version__


def test_badge_mentions_device_and_versions():
    html = last_executed().data
    assert "Last executed" in html and "torch" in html and f"tlcourse {tlcourse.__version__}" in html
