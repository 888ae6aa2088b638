"""ComfyUI workflows and their node maps: read and checked once at start (a wrong map stops
the service naming the file), and turned into catalog entries `comfyui:<name>`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flux_worker.catalog.comfyui import SHIPPED, comfyui_models, load_workflows
from flux_worker.catalog.providers import COMFYUI
from flux_worker.config import ConfigError
from flux_worker.services import build_models
from tests.support import make_config

TXT2IMG = json.loads((SHIPPED / "txt2img.json").read_text())
TXT2IMG_MAP = json.loads((SHIPPED / "txt2img.map.json").read_text())


def write(folder: Path, name: str, graph: object, mapping: object | None) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(graph))
    if mapping is not None:
        (folder / f"{name}.map.json").write_text(json.dumps(mapping))
    return path


def with_inputs(**changes: object) -> dict:
    mapping = json.loads(json.dumps(TXT2IMG_MAP))
    mapping["inputs"].update(changes)
    return mapping


def test_the_shipped_examples_are_a_txt2img_and_an_img2img_model():
    specs = {spec.id: spec for spec in comfyui_models(load_workflows(()), None)}
    txt, img = specs["comfyui:txt2img"], specs["comfyui:img2img"]
    assert list(specs) == ["comfyui:txt2img", "comfyui:img2img"]     # text first: the default
    assert txt.provider == img.provider == COMFYUI
    assert (txt.seed, txt.negative_prompt, txt.steps_field, txt.default_steps) == \
        (True, True, "steps", 20)
    assert txt.size is not None and (txt.size.min, txt.size.max) == (256, 2048)
    assert not txt.source_image and img.source_image and img.needs_image and img.strength
    assert txt.estimate_usd(1024, 1024, None) == 0.0


def test_a_price_per_image_is_each_models_dollar_price():
    (spec, *_) = comfyui_models(load_workflows(()), 0.003)
    assert spec.estimate_usd(2048, 2048, 20) == pytest.approx(0.003)


def test_a_folder_and_a_comma_list_both_name_workflows(tmp_path):
    write(tmp_path, "portrait", TXT2IMG, TXT2IMG_MAP)
    write(tmp_path, "landscape", TXT2IMG, TXT2IMG_MAP)
    assert [w.name for w in load_workflows((str(tmp_path),))] == ["landscape", "portrait"]
    only = load_workflows((str(tmp_path / "portrait.json"),))
    assert [w.model_id for w in only] == ["comfyui:portrait"]


@pytest.mark.parametrize("mapping, words", [
    (with_inputs(prompt={"node": "66", "input": "text"}), "inputs.prompt names node '66'"),
    (with_inputs(seed={"node": "3", "input": "noise_seed"}), "input 'noise_seed' of node '3'"),
    (with_inputs(steps={"node": "3", "input": "model"}), "is a link to another node"),
    (with_inputs(width=None), "both width and height"),
    (with_inputs(image={"node": "5", "input": "width"}), "an edit workflow"),
    ({**TXT2IMG_MAP, "edits": True}, "an edit workflow"),
    ({**TXT2IMG_MAP, "colour": "red"}, "colour"),
    ({**TXT2IMG_MAP, "size": {"min": 512, "max": 256}}, "size.min (512) is larger"),
    ({**TXT2IMG_MAP, "output": "99"}, "output names node '99'"),
])
def test_a_map_that_does_not_fit_its_workflow_is_refused_naming_the_file(tmp_path, mapping,
                                                                          words):
    write(tmp_path, "broken", TXT2IMG, mapping)
    with pytest.raises(ValueError, match="broken") as caught:
        load_workflows((str(tmp_path),))
    assert words in str(caught.value)


@pytest.mark.parametrize("graph, words", [
    ({"nodes": [], "links": []}, "UI format"),
    ([], "API format"),
    ({"1": {"inputs": {}}}, "needs `class_type` and `inputs`"),
    ({**TXT2IMG, "8": {"class_type": "VAEDecode", "inputs": {"samples": ["42", 0],
                                                             "vae": ["4", 2]}}},
     "links to node '42'"),
    ({k: v for k, v in TXT2IMG.items() if k != "9"}, "no SaveImage"),
])
def test_a_workflow_that_is_no_api_graph_is_refused(tmp_path, graph, words):
    mapping = {**TXT2IMG_MAP, "output": None}
    write(tmp_path, "odd", graph, mapping)
    with pytest.raises(ValueError, match=words):
        load_workflows((str(tmp_path / "odd.json"),))


def test_a_workflow_without_its_map_or_with_a_bad_name_is_refused(tmp_path):
    write(tmp_path, "lonely", TXT2IMG, None)
    with pytest.raises(ValueError, match="lonely.map.json is missing"):
        load_workflows((str(tmp_path),))
    with pytest.raises(ValueError, match="no such file"):
        load_workflows((str(tmp_path / "absent.json"),))
    bad = write(tmp_path, "my workflow", TXT2IMG, TXT2IMG_MAP)
    with pytest.raises(ValueError, match="file name becomes its model id"):
        load_workflows((str(bad),))


def test_two_workflows_of_one_name_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a", "same", TXT2IMG, TXT2IMG_MAP)
    write(tmp_path / "b", "same", TXT2IMG, TXT2IMG_MAP)
    with pytest.raises(ValueError, match="two workflows are named 'same'"):
        load_workflows((str(tmp_path / "a"), str(tmp_path / "b")))


def test_the_service_refuses_to_start_with_a_broken_workflow_naming_the_variable_and_file(
        tmp_path):
    write(tmp_path, "broken", TXT2IMG, with_inputs(prompt={"node": "66", "input": "text"}))
    config = make_config(COMFYUI_URL="http://127.0.0.1:8188", COMFYUI_WORKFLOWS=str(tmp_path))
    with pytest.raises(ConfigError, match=r"COMFYUI_WORKFLOWS: .*broken\.map\.json"):
        build_models(config)


def test_comfyui_alone_offers_its_workflows_with_txt2img_as_the_default(tmp_path):
    shutil.copytree(SHIPPED, tmp_path / "flows")
    config = make_config(COMFYUI_URL="http://127.0.0.1:8188",
                         COMFYUI_WORKFLOWS=str(tmp_path / "flows"), COMFYUI_PRICE_USD="$0.01")
    models = build_models(config)
    assert models.default.id == "comfyui:txt2img"
    assert {spec.id for spec in models.models} == {"comfyui:txt2img", "comfyui:img2img"}
    assert models.default.usd is not None and models.default.usd.per_image == 0.01


def test_a_price_that_is_no_amount_is_refused():
    with pytest.raises(ConfigError, match="COMFYUI_PRICE_USD"):
        make_config(COMFYUI_URL="http://127.0.0.1:8188", COMFYUI_PRICE_USD="cheap")
