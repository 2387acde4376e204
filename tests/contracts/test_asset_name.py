"""The AssetName message type (contract 1): the user's name, NFC, checked by the key rules."""

import unicodedata

import pytest
from pydantic import TypeAdapter, ValidationError

from emulsion_contracts import keys
from emulsion_contracts.messages import AssetName

NAMES: TypeAdapter[str] = TypeAdapter(AssetName)


@pytest.mark.parametrize("name", ["日本.jpg", "中国.jpg", "Фото 1.jpg", "photo 1.JPG", ".hidden"])
def test_unicode_names_are_accepted_as_they_are(name: str) -> None:
    assert NAMES.validate_python(name) == name


def test_names_are_normalised_to_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "Café.jpg")
    assert decomposed != "Café.jpg"
    assert NAMES.validate_python(decomposed) == "Café.jpg"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", " x", "a\x00b", "x" * 5000])
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        NAMES.validate_python(bad)


def test_the_schema_states_the_bounds() -> None:
    schema = NAMES.json_schema()
    assert (schema["minLength"], schema["maxLength"]) == (1, keys.ASSET_NAME_MAX)
