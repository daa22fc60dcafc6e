"""Task registry, did-you-mean errors, curriculum schedules and sampling rates."""

from __future__ import annotations

import pytest

from umt.tasks import MIXTURES, TASKS, Mixture, MixtureEntry, get_mixture, get_task


def test_paper_tasks_and_musicscore_s_are_registered_with_their_modalities():
    expected = {
        "omr": ("image", "lmx"),
        "amt": ("audio", "midi"),
        "i2a": ("image", "audio"),
        "a2i": ("audio", "image"),
        "m2a": ("midi", "audio"),
        "l2i": ("lmx", "image"),
        "t2i": ("text", "image"),  # MusicScore's text-to-score-image generation
    }
    assert {name: (get_task(name).source, get_task(name).target) for name in TASKS} == expected


def test_unknown_task_suggests_the_closest_name():
    with pytest.raises(KeyError, match="did you mean 'omr'"):
        get_task("omrr")
    with pytest.raises(KeyError, match="did you mean"):
        get_mixture("i2a_modle")
    with pytest.raises(ValueError, match="did you mean 'maestro'"):
        MixtureEntry("amt", datasets=("maestr",))


def test_i2a_model_schedule_matches_the_paper():
    mixture = get_mixture("i2a_model")
    active = lambda step: {n.split("/")[0] for n, r in mixture.rates(step).items() if r > 0}  # noqa: E731
    assert active(0) == active(14_999) == {"omr"}
    assert active(15_001) == {"omr", "m2a"}
    assert active(50_001) == {"omr", "m2a", "i2a"}
    ramp = mixture.entries[2]  # m2a: 0 at 15k, linear to full at 50k
    assert (
        ramp.scale(15_000) == 0.0 and ramp.scale(32_500) == pytest.approx(0.5) and ramp.scale(50_000) == 1.0
    )


def test_a2i_model_schedule_matches_the_paper():
    mixture = get_mixture("a2i_model")
    active = lambda step: {n.split("/")[0] for n, r in mixture.rates(step).items() if r > 0}  # noqa: E731
    assert active(39_999) == {"amt"}
    assert active(45_000) == {"amt", "l2i"}
    assert active(80_000) == {"amt", "l2i", "a2i"}


def test_rates_scale_with_dataset_size_and_temperature():
    mixture = Mixture("m", (MixtureEntry("omr", 1.0), MixtureEntry("amt", 1.0, datasets=("maestro",))))
    sizes = {"grandstaff": 100, "olimpic": 300, "maestro": 9600}
    rates = mixture.rates(0, sizes)
    assert sum(rates.values()) == pytest.approx(1.0)
    assert rates["amt/maestro"] == pytest.approx(9600 / 10_000)
    flat = Mixture("m", mixture.entries, temperature=1e9).rates(0, sizes)
    assert flat["amt/maestro"] == pytest.approx(1 / 3, rel=1e-3)  # sizes no longer matter
    capped = Mixture("m", mixture.entries, size_cap=300).rates(0, sizes)
    assert capped["amt/maestro"] == pytest.approx(300 / 700)


def test_stop_step_and_no_active_task():
    mixture = Mixture("m", (MixtureEntry("omr", start=0, stop=10), MixtureEntry("amt", start=5)))
    assert set(k for k, v in mixture.rates(12).items() if v > 0) == {
        "amt/maestro",
        "amt/music21",
        "amt/musicnet",
        "amt/slakh",
    }
    with pytest.raises(ValueError, match="no task is active at step 3"):
        Mixture("m", (MixtureEntry("amt", start=5),)).rates(3)
    with pytest.raises(ValueError, match="appears twice"):
        Mixture("m", (MixtureEntry("omr"), MixtureEntry("omr", datasets=("olimpic",))))


def test_every_task_has_a_single_task_mixture():
    for name in TASKS:
        assert MIXTURES.get(name).tasks == [name]
