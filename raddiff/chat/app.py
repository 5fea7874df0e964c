"""``raddiff chat``: a local Gradio app to explore two cohorts in a conversation with the agent.

* Choose the two sets: two folders, a CSV, a JSONL benchmark pair, or a SynthCXR preset.
* Chat: each message is routed (:func:`raddiff.chat.intents.route_message`) to a new agent run with the
  message as its question, a test of the user's own hypothesis, a zoom into a named region, or more rounds of
  the last run. The agent's steps stream in as they happen (read from the run's trace), tool calls as
  collapsible steps.
* A live table of hypotheses (AUROC, CI, q-value); selecting one shows the most and least typical images of
  each group for it and the two score distributions.
* Conversations persist: every run is a checkpointed LangGraph thread in the output folder, and the chat
  transcript (``chat.json``) sits next to it; the thread list reopens them.

The server binds 127.0.0.1 unless the user passes another host; what it reads and shows is checked in
:mod:`raddiff.chat.config`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphs.report_html import distribution_figure
from raddiff.chat.config import LOOPBACK, SOURCE_KINDS, AppConfig, as_text, load_source_with_skips
from raddiff.chat.conversation import TABLE_COLUMNS, gallery_items, handle_message, table_rows
from raddiff.chat.threads import ChatSession, list_threads, new_thread_id, open_session, register_session, reopen_thread
from tools.domain import InputError
from tools.ranking.lines import hypothesis_line

log = logging.getLogger(__name__)


def build_app(config: AppConfig) -> Any:
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    from evals.synth.pairs import PRESETS

    def session_of(thread: str | None) -> ChatSession | None:
        return open_session(thread)

    def views(session: ChatSession | None) -> tuple[Any, ...]:
        if session is None:
            return [], [], None
        items = session.table_items()
        return session.messages, table_rows(items, len(session.user_scored)), session.thread

    def on_send(
        message: str, thread: str | None, kind: str, first: str, second: str, preset: str, pair_index: float
    ) -> Iterator[tuple[Any, ...]]:
        session = session_of(thread)
        try:
            if session is None:
                loaded = load_source_with_skips(config, kind, first, second, preset, int(pair_index or 0))
                comparison = loaded.comparison
                session = ChatSession(
                    thread=new_thread_id(), config=config, comparison=comparison, load_skipped=list(loaded.skipped)
                )
                register_session(session)
                a, b = comparison.set_a, comparison.set_b
                session.messages.append(
                    {
                        "role": "assistant",
                        "content": f"Loaded A: {as_text(a.name)} ({len(a)} studies) and B: {as_text(b.name)} "
                        f"({len(b)} studies); {len(loaded.skipped)} inputs skipped while loading (listed in the "
                        f"run's result). Thread {as_text(session.thread)}.",
                    }
                )
            for _ in handle_message(session, message):
                yield (*views(session), "")
        except InputError as exc:
            if session is None:
                yield [{"role": "assistant", "content": f"Refused: {as_text(exc)}"}], [], None, message
                return
            session.messages.append({"role": "assistant", "content": f"Refused: {as_text(exc)}"})
            yield (*views(session), "")

    def on_select(thread: str | None, evt: gr.SelectData) -> tuple[Any, Any, str]:
        session = session_of(thread)
        if session is None:
            return [], None, ""
        row = evt.index[0] if isinstance(evt.index, list | tuple) else int(evt.index)
        items = session.table_items()
        if not 0 <= row < len(items):
            return [], None, ""
        item = items[row]
        fig = distribution_figure(item, session.rows, (session.comparison.set_a.name, session.comparison.set_b.name))
        note = f"**{as_text(hypothesis_line(item, test=None))}**"
        if fig is None:
            note += " - no per-study scores recorded for it (zoomed subset): showing its evidence studies."
        return gallery_items(session, item), fig, note

    on_select.__annotations__["evt"] = gr.SelectData  # gradio finds the event argument by its annotation

    def on_new() -> tuple[Any, ...]:
        return [], [], None, gr.update(choices=list_threads(config.output_dir))

    def on_reopen(thread: str | None) -> tuple[Any, ...]:
        if not thread:
            return [], [], None
        try:
            session = reopen_thread(config, thread)
        except InputError as exc:
            return [{"role": "assistant", "content": f"Refused: {as_text(exc)}"}], [], None
        return views(session)

    def on_kind(kind: str) -> tuple[Any, ...]:
        preset = kind == "SynthCXR preset"
        labels = {
            "Two folders": ("Folder of group A", "Folder of group B"),
            "CSV file": ("CSV file (columns: path, group_name, report, ...)", "(unused)"),
            "Benchmark pair (JSONL)": ("JSONL pair file", "(unused)"),
        }.get(kind, ("(unused)", "(unused)"))
        return (
            gr.update(visible=preset),
            gr.update(visible=not preset, label=labels[0]),
            gr.update(visible=kind == "Two folders", label=labels[1]),
            gr.update(visible=kind == "Benchmark pair (JSONL)"),
        )

    roots_text = ", ".join(str(r) for r in config.readable_roots())
    with gr.Blocks(title="raddiff chat") as demo:
        thread_state = gr.State(None)
        gr.Markdown(
            "## raddiff: how do two sets of chest radiographs differ?\n"
            f"Models: policy `{as_text(config.llm)}`, scorer `{as_text(config.scorer)}`, "
            f"describer `{as_text(config.describer)}`. Readable folders: {as_text(roots_text)}"
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                kind = gr.Radio(list(SOURCE_KINDS), value=SOURCE_KINDS[0], label="The two sets", elem_id="source-kind")
                preset = gr.Dropdown(list(PRESETS), value="effusion", label="SynthCXR preset", elem_id="preset")
                first = gr.Textbox(label="(unused)", visible=False, elem_id="source-first")
                second = gr.Textbox(label="(unused)", visible=False, elem_id="source-second")
                pair_index = gr.Number(value=0, precision=0, label="Pair (0-based line)", visible=False)
                gr.Markdown(
                    "Ask anything to start a run (*what differs?*, *look at the left base*, "
                    "*test my hypothesis: right pleural effusion*, *more rounds*)."
                )
                new_btn = gr.Button("New conversation")
                threads = gr.Dropdown(
                    list_threads(config.output_dir),
                    label="Reopen a thread",
                    elem_id="threads",
                    allow_custom_value=False,
                )
                reopen_btn = gr.Button("Reopen")
            with gr.Column(scale=3):
                chat = gr.Chatbot(
                    label="Conversation",
                    height=520,
                    sanitize_html=True,
                    allow_tags=False,
                    elem_id="chat",
                    group_consecutive_messages=False,
                )
                with gr.Row():
                    box = gr.Textbox(
                        placeholder="e.g. what are the differences?", show_label=False, scale=5, elem_id="message"
                    )
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        table = gr.Dataframe(
            headers=TABLE_COLUMNS,
            label="Hypotheses (select a row)",
            interactive=False,
            wrap=True,
            elem_id="hypotheses",
        )
        selected = gr.Markdown(elem_id="selected")
        with gr.Row():
            gallery = gr.Gallery(
                label="Most and least typical studies", columns=6, height="auto", scale=3, elem_id="gallery"
            )
            plot = gr.Plot(label="Score distributions", scale=2, elem_id="plot")

        kind.change(on_kind, [kind], [preset, first, second, pair_index])
        inputs = [box, thread_state, kind, first, second, preset, pair_index]
        outputs = [chat, table, thread_state, box]
        send.click(on_send, inputs, outputs)
        box.submit(on_send, inputs, outputs)
        table.select(on_select, [thread_state], [gallery, plot, selected])
        new_btn.click(on_new, None, [chat, table, thread_state, threads])
        reopen_btn.click(on_reopen, [threads], [chat, table, thread_state])
    return demo


def launch(
    config: AppConfig, host: str = LOOPBACK, port: int | None = None, *, block: bool = True, quiet: bool = False
) -> Any:
    """Start the app on ``host:port`` (loopback by default); returns the Blocks object (when not blocking)."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if host not in (LOOPBACK, "localhost", "::1"):
        log.warning("raddiff chat listens on %s: reachable from other machines", host)
    demo = build_app(config)
    demo.queue(default_concurrency_limit=2)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        allowed_paths=[],
        prevent_thread_lock=not block,
        show_error=True,
        quiet=quiet,
        ssr_mode=False,
    )
    return demo
