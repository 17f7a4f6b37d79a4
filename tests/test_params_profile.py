import math

import pytest
from hypothesis import given, strategies as st

from cybloid.errors import ParameterError, ProfileError
from cybloid.params import Param, Values, parse_assignments
from cybloid.profile import load_lab_profile, profile_from_dict
from cybloid.units import diffusion_coefficient, kT_pN_um, stokes_friction


def test_units_match_known_values():
    assert kT_pN_um(298.0) == pytest.approx(4.11e-3, rel=2e-3)
    # gamma = 3 pi eta sigma: water 1e-3 Pa s, 1 um sphere -> 9.42e-3 pN s/um
    assert stokes_friction(1.0, 1e-3) == pytest.approx(3 * math.pi * 1e-3)
    assert diffusion_coefficient(1.0, 298.0, 1e-3) == pytest.approx(0.436, rel=1e-2)


def test_param_validation_messages():
    p = Param("k", 1.0, "pN/um", 0.0, 10.0)
    assert p.validate("2.5") == 2.5
    with pytest.raises(ParameterError, match="above its maximum"):
        p.validate(11)
    with pytest.raises(ParameterError, match="must be a number"):
        p.validate("abc")
    with pytest.raises(ParameterError, match="finite"):
        p.validate(float("nan"))
    assert Param("n", 3, "", 1, 5).validate("4") == 4
    with pytest.raises(ParameterError, match="integer"):
        Param("n", 3).validate("4.5")
    v = Values([p])
    with pytest.raises(ParameterError, match="unknown parameter 'q'"):
        v.set("q", 1)


def test_parse_assignments():
    assert parse_assignments(["a=1", "b = x"]) == {"a": "1", "b": "x"}
    with pytest.raises(ParameterError, match="NAME=VALUE"):
        parse_assignments(["novalue"])


@given(st.text(max_size=20))
def test_numeric_param_never_crashes_on_text(text):
    p = Param("x", 1.0, "", -5.0, 5.0)
    try:
        v = p.validate(text)
    except ParameterError:
        return
    assert -5.0 <= v <= 5.0


def test_default_profile_physics():
    prof = load_lab_profile()
    assert prof.kT == pytest.approx(4.116e-3, rel=1e-3)
    assert prof.diffusion == pytest.approx(prof.kT / prof.gamma)
    assert prof.inherent_latency_s == pytest.approx(0.001 + 0.001 + 0.001 + 0.0005)


@pytest.mark.parametrize("data, match", [
    ({"camera": {"fps": -1}}, r"\[camera\] fps = -1.0 is below"),
    ({"camera": {"fpss": 10}}, r"unknown key 'fpss'"),
    ({"cmaera": {}}, r"unknown section \[cmaera\]"),
    ({"camera": {"bit_depth": "twelve"}}, r"bit_depth must be an integer"),
    ({"laser": {"steer_from_px": [[1, 0], [0, 1]]}}, r"2x3 matrix"),
    ({"camera": {"exposure_s": 0.5, "fps": 100}}, r"longer than the frame period"),
    ({"format": "other/9"}, r"unknown lab profile format"),
])
def test_bad_profiles_are_named(data, match):
    with pytest.raises(ProfileError, match=match):
        profile_from_dict(data, source="x.toml")


def test_malformed_toml_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[camera\nfps = 3\n")
    with pytest.raises(ProfileError, match=r"bad.toml: malformed TOML"):
        load_lab_profile(f)
    with pytest.raises(ProfileError, match="not found"):
        load_lab_profile(tmp_path / "missing.toml")


@given(st.dictionaries(st.sampled_from(["fps", "width_px", "exposure_s", "bit_depth", "zzz"]),
                       st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=True), st.text(max_size=5), st.booleans())))
def test_random_camera_sections_raise_profile_error_or_load(section):
    try:
        prof = profile_from_dict({"camera": section}, source="fuzz.toml")
    except ProfileError as exc:
        assert "fuzz.toml" in str(exc)
    else:
        assert prof.camera.fps > 0
