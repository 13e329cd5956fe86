"""``crlhf-train``'s options that guard secrets and the machine: the token, --unsafe-eval."""

from __future__ import annotations

import pytest
from crlhf_trainer import sandbox
from crlhf_trainer.cli import build_parser, main
from crlhf_trainer.commands import config_from_args
from crlhf_trainer.errors import TrainConfigError
from crlhf_trainer.sandbox import SandboxUnavailable


def config(*argv: str):
    return config_from_args(build_parser().parse_args(list(argv)))


def test_a_token_on_the_command_line_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["pull", "--store-url", "http://127.0.0.1:1", "--token", "crlhf_secret"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "CRLHF_TOKEN" in err and "--token-file" in err and "crlhf_secret" not in err


def test_the_token_comes_from_the_environment_or_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv("CRLHF_TOKEN", "crlhf_from_env")
    assert config("pull", "--store-url", "http://s").token == "crlhf_from_env"
    token_file = tmp_path / "token"
    token_file.write_text("  crlhf_from_file\n")
    assert config("pull", "--store-url", "http://s", "--token-file", str(token_file)).token == (
        "crlhf_from_file"
    )
    monkeypatch.delenv("CRLHF_TOKEN")
    assert config("pull", "--store-url", "http://s").token is None
    token_file.write_text("\n")
    with pytest.raises(TrainConfigError, match="is empty"):
        config("pull", "--store-url", "http://s", "--token-file", str(token_file))
    with pytest.raises(TrainConfigError, match="cannot read"):
        config("pull", "--store-url", "http://s", "--token-file", str(tmp_path / "none"))


def test_without_a_jail_eval_refuses_unless_unsafe_eval_and_then_warns(monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "jail_problem", lambda: "bubblewrap (bwrap) is not installed")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        config("eval", "--model", "m", "--eval", "mbpp")
    assert main(["eval", "--model", "m", "--eval", "mbpp"]) == 2
    assert "--unsafe-eval" in capsys.readouterr().err
    cfg = config("eval", "--model", "m", "--eval", "mbpp", "--unsafe-eval")
    assert cfg.eval.unsafe
    err = capsys.readouterr().err
    assert "WARNING" in err and "UNJAILED" in err
    # nothing to run, nothing to refuse; pulling never runs generated code
    assert not config("eval", "--model", "m", "--eval", "none").eval.unsafe
    assert config("pull", "--store-url", "http://s").eval.unsafe is False
    assert capsys.readouterr().err == ""


def test_with_a_jail_unsafe_eval_still_runs_programs_jailed(capsys):
    assert sandbox.jail_problem() is None, "no jail on this machine: run make setup-system"
    assert config("eval", "--model", "m", "--eval", "mbpp", "--unsafe-eval").eval.unsafe
    assert sandbox.Sandbox(unsafe=True).jailed
    assert capsys.readouterr().err == ""


def test_the_gate_resume_and_pass_at_k_options_reach_the_config():
    cfg = config(
        "run", "--store-url", "http://s", "--model", "m", "--eval-samples", "10",
        "--temperature", "0.8", "--eval-ks", "10,1", "--min-items", "30",
        "--margin-scale", "2", "--publish-without-evidence", "--checkpoint-every", "5",
        "--resume",
    )  # fmt: skip
    assert cfg.eval.ks == (1, 10) and cfg.eval.samples == 10
    assert cfg.gate.min_items == 30 and cfg.gate.margin_scale == 2.0
    assert cfg.gate.publish_without_evidence is True
    assert cfg.train.checkpoint_every == 5 and cfg.train.resume is True
    assert cfg.train.importance == "policy"  # greedy serving logs no behaviour policy
    trust = config(
        "run", "--store-url", "http://s", "--model", "m", "--importance", "start",
        "--negative-weight", "0.25",
    )  # fmt: skip
    assert (trust.train.importance, trust.train.negative_weight) == ("start", 0.25)
    with pytest.raises(TrainConfigError, match="eval-samples"):
        config("run", "--store-url", "http://s", "--model", "m", "--eval-ks", "1,10")
    with pytest.raises(TrainConfigError, match="whole numbers"):
        config("run", "--store-url", "http://s", "--model", "m", "--eval-ks", "one")
