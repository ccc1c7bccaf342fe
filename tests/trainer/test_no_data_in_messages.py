"""A Dataset's errors name the problem and never repeat data from the file (issue 16, item
11): a Dataset pointed at ``/etc/shadow`` or a credentials file put its first line (a
password hash, an AWS secret key) into status and a Warning event, both of which carry the
run's summary message. Column names are repeated only when they read as a header."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pilotage.api import parse_resource
from pilotage.api.dataset import Dataset
from pilotage.sources.files import parse_problem
from pilotage.trainer.run import _one_line, profile
from pilotage.trainer.validate import header_is_shown

HASH = "$6$Qm9vYmFy$Zk9wQ2x1c3R3b0hhc2hlZFBhc3N3b3JkU2FsdGVkQW5kU3BpY2Vk"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def _profile(tmp_path: Path, name: str, text: str, **spec: object) -> dict[str, object]:
    path = tmp_path / name
    path.write_text(text)
    ds = parse_resource(
        {
            "apiVersion": "pilotage.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "d"},
            "spec": {"source": {"uri": path.as_uri(), "format": "csv"}, **spec},
        }
    )
    assert isinstance(ds, Dataset)
    return profile(ds, None)


@pytest.mark.parametrize(
    ("name", "text", "secret"),
    [
        ("shadow", f"root:{HASH}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n", HASH),
        ("credentials", f"aws_secret_access_key = {SECRET}\nregion = eu-west-1\n", SECRET),
        ("keys.csv", f"{KEY_ID},{SECRET}\nAKIB0000000000000000,other\n", SECRET),
        ("pem", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n", "BEGIN"),
    ],
)
def test_a_file_that_is_not_a_table_is_not_echoed(
    tmp_path: Path, name: str, text: str, secret: str
) -> None:
    summary = _profile(tmp_path, name, text, target="label")
    message = str(summary["message"])
    assert summary["phase"] == "Failed"
    assert "target column 'label' is not in the data" in message
    assert "names not shown" in message
    assert secret not in message and KEY_ID not in message
    assert "$6$" not in message


def test_a_real_header_is_still_listed(tmp_path: Path) -> None:
    summary = _profile(
        tmp_path, "d.csv", "sepal_length,petal width (cm),species\n1,2,a\n", target="y"
    )
    assert "(columns: sepal_length, petal width (cm), species)" in str(summary["message"])


def test_values_outside_allowed_values_are_counted_not_quoted(tmp_path: Path) -> None:
    # A credentials CSV with its usual header: a schema with allowedValues that nothing
    # matches used to read the column out ("e.g. ['wJalr…']").
    text = f"User name,Access key ID,Secret access key\nci,{KEY_ID},{SECRET}\nops,AKIB,other\n"
    summary = _profile(
        tmp_path,
        "credentials.csv",
        text,
        target="User name",
        schema=[{"name": "Secret access key", "type": "category", "allowedValues": ["x"]}],
    )
    message = str(summary["message"])
    assert summary["phase"] == "Failed"
    assert (
        "column Secret access key: notAllowed (2) 2 values outside allowedValues (2 distinct)"
        in message
    )
    assert SECRET not in message and "other" not in message
    assert SECRET not in str(summary["findings"])


def test_parser_messages_are_not_repeated_when_they_could_quote_the_file() -> None:
    quoted = ValueError(f"could not convert string to float: '{SECRET}'")
    assert SECRET not in parse_problem(quoted)
    assert parse_problem(quoted) == "the parser refused it (ValueError)"
    tokenizing = pd.errors.ParserError(
        "Error tokenizing data. C error: Expected 1 fields in line 3, saw 2\n"
    )
    assert parse_problem(tokenizing) == "expected 1 fields in line 3, saw 2"
    binary = UnicodeDecodeError("utf-8", b"\x00\xff", 1, 2, "invalid start byte")
    assert parse_problem(binary) == "byte 1 is not UTF-8"
    assert _one_line(quoted) == "could not convert string to float: '…'"


def test_a_csv_that_breaks_on_a_later_line_names_the_line_not_its_text(tmp_path: Path) -> None:
    summary = _profile(
        tmp_path, "creds", f"user,password\nci,x\n{SECRET},{HASH},x\n", target="user"
    )
    message = str(summary["message"])
    assert "expected 2 fields in line 3, saw 3" in message
    assert SECRET not in message and HASH not in message


@pytest.mark.parametrize(
    ("names", "shown"),
    [
        (["a", "b"], True),
        (["sepal length (cm)", "od280/od315_of_diluted_wines"], True),
        (["only"], False),
        ([KEY_ID, SECRET], False),
        (["x" * 65, "y"], False),
        (["a\x1b[2J", "b"], False),
    ],
)
def test_which_headers_are_shown(names: list[str], shown: bool) -> None:
    assert header_is_shown(names) is shown
