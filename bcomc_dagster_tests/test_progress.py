"""Progress reports reach whoever watches, and the CLI's bars follow them."""

import io
import threading

from rich.console import Console
from rich.progress import Progress

from bcomc_dagster import progress


def test_reports_reach_watchers_only_while_they_watch():
    seen = []
    progress.report("generate it1", 1, 10)  # nobody watches: nothing happens
    with progress.watching(lambda *a: seen.append(a)):
        threads = [threading.Thread(target=progress.report, args=("eval it1", k, 4)) for k in range(1, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        progress.report("fine-tune it1", 5, 10, "loss 2.100")
    progress.report("eval it2", 1, 4)
    assert sorted(s[1] for s in seen if s[0] == "eval it1") == [1, 2, 3, 4]
    assert ("fine-tune it1", 5, 10, "loss 2.100") in seen and len(seen) == 5


def test_rich_bars_show_each_task_and_drop_it_when_done():
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    with Progress(console=console, auto_refresh=False) as bar:
        watch = progress.rich_watcher(bar)
        watch("fine-tune it1", 5, 20, "loss 2.345")
        task = bar.tasks[0]
        assert (task.description, task.completed, task.total) == ("fine-tune it1 loss 2.345", 5, 20)
        watch("eval it1", 3, 40, "")
        assert [t.description for t in bar.tasks] == ["fine-tune it1 loss 2.345", "eval it1"]
        watch("fine-tune it1", 20, 20, "loss 1.900")
        assert [t.description for t in bar.tasks] == ["eval it1"]  # finished: removed
        bar.refresh()
    assert "eval it1" in console.file.getvalue()
