"""The soak benchmark's verdict (benchmarks/soak.py) on made-up samples; the soak itself runs for minutes."""

from types import SimpleNamespace

from ovchat.benchmarks.soak import Counts, Sample, verdict

ARGS = SimpleNamespace(in_process=False, serve_cmd=None, model=None, streams=8, minutes=10, disconnect=0.2, within=5.0)


def test_rss_is_judged_from_its_value_at_one_minute():
    warm_up = [Sample(0, 300, 0), Sample(30, 420, 100)]   # the first minute may grow: not judged
    flat = verdict(warm_up + [Sample(60, 450, 200), Sample(300, 460, 1000), Sample(600, 455, 2000)], Counts(2000), ARGS, 0)
    assert flat["flat"] and flat["rss_mb_at_1_min"] == 450 and flat["max_change_after_1_min_pct"] == 2.22
    growing = verdict(warm_up + [Sample(60, 450, 200), Sample(600, 480, 2000)], Counts(2000), ARGS, 0)
    assert not growing["flat"] and growing["max_change_after_1_min_pct"] == 6.67
    assert growing["kb_per_request_after_1_min"] == round(30 * 1024 / 1800, 2)


def test_ovchat_bench_soak_runs_the_soak_with_the_bench_flags(monkeypatch, tmp_path):
    from ovchat.benchmarks import cli, soak

    seen = []
    monkeypatch.setattr(soak, "main", lambda argv: seen.append(argv) or 0)
    parser = cli.setup_arg_parser(__import__("argparse").ArgumentParser())
    args = parser.parse_args(["--soak", "3", "--server-streams", "4", "--ovchat-serve-cmd", "x serve --in-process",
                              "--out", str(tmp_path / "r")])
    assert cli.handle(args) == 0
    assert seen == [["--minutes", "3.0", "--out", str(tmp_path / "r" / "soak.json"), "--streams", "4",
                     "--serve-cmd", "x serve --in-process"]]
    assert cli.handle(parser.parse_args(["--soak", "1", "--model", "a", "--model", "b"])) == 2
