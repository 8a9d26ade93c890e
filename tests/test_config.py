"""The recipe of a run: which ``TrainConfig`` fields change the result, and which it shows."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys

import pytest

from lintorch import config
from lintorch.config import TrainConfig

# Paths and switches: none of them changes what is trained.
SWITCHES = {"data_root", "logdir", "run_name", "resume", "quiet", "tensorboard", "cuda_graphs",
            "no_download", "device", "refresh_cache"}
ALWAYS = {"dataset", "model", "loss", "impl", "epochs", "batch_size", "lr", "lr_decay",
          "momentum", "reg", "reg_type", "preprocess", "augment", "val_size", "seed", "dtype"}


def test_every_field_declares_its_help_and_its_role():
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"] and f.metadata["role"] in ("recipe", "io", "run"), f.name
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(config.RECIPE + config.NOT_RECIPE) == sorted(fields)


def test_every_field_is_a_flag_with_the_fields_default_and_help():
    from lintorch import cli, train

    actions = cli.add_training_flags(argparse.ArgumentParser())
    for f in dataclasses.fields(TrainConfig):
        assert actions[f.name].default == f.default, f.name
        assert actions[f.name].help.startswith(f.metadata["help"]), f.name
        assert actions[f.name].option_strings[0] == "--" + f.name.replace("_", "-")
        assert config.flag(f.name) == actions[f.name].option_strings[0]
    assert train.config_from_args(train.build_parser().parse_args([])) == TrainConfig()


def test_a_tool_takes_some_fields_with_its_own_default_and_the_fields_check():
    from lintorch import cli

    parser = argparse.ArgumentParser()
    actions = cli.add_training_flags(parser, only=("limit", "epochs"), epochs=3)
    assert sorted(actions) == ["epochs", "limit"]
    assert actions["limit"].help.startswith(TrainConfig.__dataclass_fields__["limit"].metadata[
        "help"])
    assert parser.parse_args([]).epochs == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--limit", "0"])  # the field's bound, as TrainConfig checks it
    assert config.out_of_bounds(0, "positive", int) == "a positive integer"
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        TrainConfig(dataset="fashion-mnist", limit=0).resolved()


@pytest.mark.parametrize("field, value, words", [
    ("lr", -1.0, "lr must be a finite number > 0"),
    ("epochs", 0, "epochs must be a positive integer"),
    ("reg", float("nan"), "reg must be a finite number >= 0"), ("hidden", [4, 0], "hidden must be"),
    ("loss", "hinge", "loss must be one of ('svm', 'softmax')"),
    ("lr_decay", "linear", "lr_decay must be one of"), ("val_size", -1, "val_size must be"),
])
def test_a_value_out_of_its_fields_bounds_is_refused_naming_the_field(field, value, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        TrainConfig(dataset="fashion-mnist", **{field: value}).resolved()


def test_a_resumed_run_takes_given_values_equal_to_the_saved_ones_and_refuses_others():
    saved = dataclasses.asdict(TrainConfig(dataset="fashion-mnist", lr=0.3, epochs=4).resolved())
    same = TrainConfig(dataset="fashion-mnist", lr=0.3, epochs=9, resume="ckpt")
    resumed = same.resumed_from(saved, given={"dataset", "lr", "epochs", "resume"})
    assert (resumed.lr, resumed.epochs, resumed.resume) == (0.3, 9, "ckpt")
    with pytest.raises(config.ResumeConflict, match=r"lr cannot change .* 0\.3, --lr gives 0\.5"):
        TrainConfig(lr=0.5).resumed_from(saved, given={"lr"})
    # a flag not given keeps the saved value, whatever its default says
    assert TrainConfig(resume="ckpt").resumed_from(saved).dataset == "fashion-mnist"


def test_paths_and_switches_are_not_recipe():
    assert set(config.NOT_RECIPE) == SWITCHES


def test_a_resumed_run_may_change_its_epochs_and_nothing_else_of_its_recipe():
    # logdir and run_name are neither: a resumed run keeps its folder.
    free = set(config.FREE_ON_RESUME)
    assert free & set(config.RECIPE) == {"epochs"}
    assert free | {"logdir", "run_name"} == set(config.NOT_RECIPE) | {"epochs"}


@pytest.mark.parametrize("model, lr_decay, limit, used", [
    ("linear", "cosine", None, set()),
    ("linear", "none", None, set()),
    ("linear", "exp", 500, {"lr_gamma", "limit"}),
    ("mlp", "step", None, {"hidden", "lr_step", "lr_gamma"}),
    ("mlp", "cosine", 500, {"hidden", "limit"}),
])
def test_recipe_holds_a_field_only_where_the_run_uses_it(model, lr_decay, limit, used):
    cfg = TrainConfig(dataset="fashion-mnist", model=model, lr_decay=lr_decay, limit=limit,
                      hidden=[16, 8], lr_step=3, lr_gamma=0.7, val_size=100).resolved()
    shown = config.recipe(cfg)
    assert set(shown) == ALWAYS | used
    assert shown == {k: getattr(cfg, k) for k in shown}


@pytest.mark.parametrize("dataset", ["cifar10", "my-images"])  # a folder of images: CIFAR-10's
def test_the_svm_takes_its_own_rate_and_strength_on_cifar10(dataset):
    softmax = TrainConfig(dataset=dataset).resolved()
    svm = TrainConfig(dataset=dataset, loss="svm").resolved()
    assert (svm.lr, svm.reg) == (config.SVM_OVERRIDES["cifar10"]["linear"]["lr"],
                                 config.SVM_OVERRIDES["cifar10"]["linear"]["reg"])
    assert (svm.lr, svm.reg) != (softmax.lr, softmax.reg)
    assert (svm.epochs, svm.batch_size) == (softmax.epochs, softmax.batch_size)
    assert TrainConfig(dataset=dataset, loss="svm", lr=0.5).resolved().lr == 0.5


def test_help_lists_the_svms_own_defaults():
    line = next(line for line in config.defaults_epilog().splitlines()
                if line.strip().startswith("cifar10 linear:"))
    assert "(--loss svm: lr=0.001, reg=0.1)" in line


def test_the_config_and_the_checkpoint_load_no_data_code():
    # Reading a checkpoint or making a TrainConfig needs neither numpy's readers nor the decoder.
    script = ("import sys, lintorch.config, lintorch.checkpoint\n"
              "print(sorted({'lintorch.data', 'lintorch.image_folder'} & set(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
