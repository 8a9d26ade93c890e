"""The recipe of a run: which ``TrainConfig`` fields change the result, and which it shows."""

from __future__ import annotations

import dataclasses

import pytest

from lintorch import config
from lintorch.config import TrainConfig

# Paths and switches: none of them changes what is trained.
SWITCHES = {"data_root", "logdir", "run_name", "resume", "quiet", "tensorboard", "cuda_graphs",
            "no_download", "device"}
ALWAYS = {"dataset", "model", "loss", "impl", "epochs", "batch_size", "lr", "lr_decay",
          "momentum", "reg", "reg_type", "preprocess", "augment", "val_size", "seed", "dtype"}


def test_every_field_is_either_recipe_or_not():
    # A new TrainConfig field fails here until it is put in one of the two.
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(config.RECIPE + config.NOT_RECIPE) == sorted(fields)


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
                      hidden=[16, 8], lr_step=3, lr_gamma=0.7).resolved()
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
