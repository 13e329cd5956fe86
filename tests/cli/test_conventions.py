"""The conventions scenario: rules a reviewer judges per line, real prompts, a clean split."""

from __future__ import annotations

import doctest

import pytest
from crlhf_cli import conventions as conv


def test_docstring_examples_run():
    failed, attempted = doctest.testmod(conv)
    assert attempted > 0 and failed == 0


@pytest.mark.parametrize(
    ("line", "rules"),
    [
        ('    msg = "%d items" % n', ["fstring"]),
        ("    msg = '{} items'.format(n)", ["fstring"]),
        ('    msg = f"{n} items"', []),
        ("    x = a % b", []),  # arithmetic is not formatting
        ("    p = os.path.join(root, name)", ["pathlib"]),
        ("    p = Path(root) / name", []),
        ("    print(value)", ["logging"]),
        ("    log.debug('x')", []),
        ("    except:", ["bare-except"]),
        ("    except ValueError:", []),
        ("def f(a, b):", ["type-hints"]),
        ("def f(a: int) -> int:", []),
    ],
)
def test_each_rule_judges_one_line(line, rules):
    assert conv.breaks(line) == rules


def test_line_truth_judges_the_first_line_with_the_prompts_part_of_it():
    head = '    raise TypeError("bad: %s"'
    assert conv.line_truth(" % x)\n    return y\n\n    # done", head) == [-1, 1, None, None]
    assert conv.line_truth(".format(x))", head='    s = "{}"') == [-1]
    assert conv.line_truth(")\n", head=head) == [1]  # the string is left unformatted


@pytest.fixture(scope="module")
def functions():
    return conv.stdlib_functions()


def test_prompts_stop_just_before_the_rule_breaking_construct(functions):
    assert len(functions) > 500
    for f in functions[:200]:
        line = f.source.split("\n")[f.first_break]
        assert conv.breaks(line), f.key
        assert f.prompt.endswith(f.head) and f.head == line[: f.cut]
        assert not [r for r in conv.breaks(f.head) if r != "type-hints"], (f.key, f.head)


def test_the_split_never_puts_a_package_on_both_sides(functions):
    train, held = conv.split(functions)
    top = {f.module.split(".")[0] for f in train}
    assert not top & {f.module.split(".")[0] for f in held}
    assert 0.1 < len(held) / len(functions) < 0.6


def test_honeypots_carry_the_rules_truth_per_line(functions):
    train, _ = conv.split(functions)
    pots = conv.honeypots(train, 20)
    assert len(pots) == 20
    for h in pots:
        assert len(h.truth) == len(h.text.split("\n"))
        assert -1 in h.truth  # each starts with the rest of its rule-breaking line


@pytest.mark.slow  # greedy generation for every guard prompt: ~15-30 s of CPU
def test_the_guard_suite_scores_each_prompt_and_keeps_its_completions(tiny_model):
    """The gate's guard (crlhf_cli.demo_learning.guard_suite): one 0/1 per held-out prompt,
    1 exactly when the completion parses and repeats no line, the texts kept for the demo."""
    from crlhf_cli import demo_learning as dl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    generated: list[list[str]] = []
    suite = dl.guard_suite(4, max_new_tokens=12, generated=generated)
    scores = suite(model, tokenizer)
    functions = dl.heldout_prompts(4)
    assert len(scores) == 4 and len(generated) == 1 and len(generated[0]) == 4
    for f, text, score in zip(functions, generated[0], scores, strict=True):
        assert score == float(dl._parses(f.prompt, text) and not dl._repeats(text))
    assert dl._repeats("x = 1\nx = 1\n") and not dl._parses("def f(:\n", "")


def test_the_correct_suite_scores_each_held_out_pair(tiny_model):
    """The gate's second guard (crlhf_cli.demo_learning.correct_suite): one q per held-out
    function with a pair, the pair guard's own number."""
    from crlhf_cli import demo_learning as dl
    from crlhf_cli.learning_eval import pair_margins
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    scores = dl.correct_suite(6)(model, tokenizer)
    items = dl._eval_items(tokenizer.name_or_path, 6, 256)
    paired = [it for it in items if it.pair is not None]
    assert len(scores) == len(paired) >= 1
    assert scores == [q for q in pair_margins(model, items) if q is not None]


def test_guard_flags_mark_each_completion_and_the_rates_are_their_means():
    """The per-prompt guards whose paired changes bench/learning_generation.py intervals."""
    from crlhf_cli import demo_learning as dl

    functions = dl.heldout_prompts(3)
    indent = " " * 8
    texts = [
        f"{indent}x = 1\n{indent}return x\n",  # parses, no repeat
        f"{indent}x = 1\n{indent}x = 1\n",  # parses, repeats a line
        f"{indent}return (]\n",  # does not parse
    ]
    flags = dl.guard_flags(functions, texts)
    assert flags["repeats"] == [0.0, 1.0, 0.0]
    assert flags["parses"][2] == 0.0
    scores = dl.guard_scores(functions, texts)
    assert scores["parse_rate"] == sum(flags["parses"]) / 3
    assert scores["repetition"] == 1 / 3


def test_a_format_string_prompt_stops_before_the_string_so_an_f_string_can_follow(tmp_path):
    """Cut after the literal's closing quote, the prompt would leave no continuation that
    keeps the rule and the code (``"%d items"`` then anything but ``%`` is wrong code): a
    model pushed off ``%`` there can only write broken or degenerate text. Before the
    literal, ``f"{n} items"`` is one choice among others, and a developer's fix of the
    line is a continuation of the prompt."""
    from crlhf_cli.conventions_fix import corrections

    (tmp_path / "mod.py").write_text(
        "def f(n, k):\n    total = n + k\n    msg = 'x' + \"%d items\" % total\n    return msg\n"
    )
    [f] = conv.stdlib_functions(root=tmp_path)
    assert f.head == "    msg = 'x' + "
    rest = f.source.split("\n")[f.first_break][f.cut :]
    assert rest == '"%d items" % total'
    assert conv.line_truth(rest, f.head) == [-1]
    assert conv.line_truth('f"{total} items"', f.head) == [1]
    assert corrections(rest, f.head) == ['f"{total} items"']


def test_the_guards_judge_the_suggestion_crlhf_lsp_shows_not_the_raw_tokens():
    """A model that loops on a line shows a developer that line once (crlhf-lsp ends a
    completion at a line repeating the one before), and what it writes past the end of the
    block is never shown: the guards must not count either against the candidate."""
    from crlhf_cli import demo_learning as dl

    source = "def total(xs):\n    n = 0\n    for x in xs:\n        n += x\n    return n"
    f = conv.Function(module="m", name="total", source=source, first_break=3, cut=8)
    prompt = f.prompt
    looping = "n += x\n        n += x\n        n += x\n        n += x\n"
    assert dl.ghost_text(prompt, looping) == "n += x"
    beyond = "n += x\n        n *= 2\n    return n\n\n\ndef other(:\n    pass\n"
    assert dl.ghost_text(prompt, beyond) == "n += x\n        n *= 2"  # the loop's body
    raw = dl.guard_flags([f, f], [looping, beyond])
    assert raw["repeats"][0] == 1.0  # the raw tokens would have counted a repeat …
    shown = dl.guard_flags([f, f], [dl.ghost_text(prompt, t) for t in (looping, beyond)])
    assert shown == {"parses": [1.0, 1.0], "repeats": [0.0, 0.0]}  # … the suggestion has none


@pytest.mark.slow  # crlhf-lsp over stdio and llama.cpp on the tiny GGUF: ~15 s
async def test_the_guard_texts_are_the_suggestions_crlhf_lsp_serves(tmp_path):
    """The base model's guard texts must be what a real crlhf-lsp (llamacpp backend, the
    demo's maxTokens, no time budget) suggests at the end of each held-out prompt."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from crlhf_cli import demo_learning as dl
    from lsp_harness import inline, lsp_session, open_doc, settings_for
    from tiny_gguf import build_tiny_gguf

    gguf = build_tiny_gguf()
    prompts = [f.prompt for f in dl.heldout_prompts(6)]
    served = []
    async with lsp_session(settings_for(tmp_path, gguf, backend="llamacpp")) as client:
        for i, prompt in enumerate(prompts):
            uri = f"file:///work/guard_{i}.py"
            open_doc(client, uri, prompt)
            lines = prompt.split("\n")
            items = await inline(client, uri, len(lines) - 1, len(lines[-1]))
            served.append(items[0].insert_text if items else "")
    texts = dl.served_adapter_texts(gguf, None, prompts, 48)
    assert texts == served
    assert any("\n" in t for t in texts)  # multi-line suggestions, cut where the server cuts


@pytest.mark.slow  # llama.cpp on the tiny GGUF, twice, plus a LoRA conversion: ~10 s
def test_the_demo_gate_judges_the_completions_llama_cpp_serves(tiny_model, tmp_path):
    """Where crlhf-lsp serves a GGUF, the gate's guard must judge llama.cpp's completions
    with the candidate's LoRA as a GGUF LoRA, as a developer would see them: the trainer's
    f32 copy wrote different greedy text on 19 of 24 of Gemma's guard prompts."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from crlhf_cli import demo_learning as dl
    from crlhf_cli.demo import parse_args
    from crlhf_cli.demo_training import nightly_config
    from crlhf_cli.llamacpp_texts import complete_all
    from crlhf_trainer.train import TrainConfig, load_policy
    from tiny_gguf import build_tiny_gguf
    from tiny_model import ALL_TARGETS, make_tiny_adapter
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = build_tiny_gguf()
    adapter = make_tiny_adapter(tiny_model, tmp_path / "a", seed=3, target_modules=ALL_TARGETS)
    cfg = parse_args(["--guard-prompts", "4"])
    generated: list[list[str]] = []
    night = nightly_config(
        cfg, store_url="http://127.0.0.1:9", token="t", model=str(tiny_model),
        work_dir=tmp_path, train=TrainConfig(), guard_texts=generated, gguf=gguf,
    )  # fmt: skip
    suite = night.eval.suites["sound"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    suite(AutoModelForCausalLM.from_pretrained(tiny_model), tokenizer)
    suite(load_policy(str(tiny_model), TrainConfig(), adapter=adapter, trainable=False), tokenizer)

    prompts = [f.prompt for f in dl.heldout_prompts(4)]
    jobs = [(p, 0) for p in prompts]
    raw = [complete_all(gguf, a, jobs, max_tokens=48, temperature=0) for a in (None, adapter)]
    served = [[dl.ghost_text(p, t) for p, t in zip(prompts, r, strict=True)] for r in raw]
    assert generated == served
    assert generated[0] != generated[1]  # the candidate's LoRA was applied, not the base twice
