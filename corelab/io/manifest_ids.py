"""Patient ids as file names: which ids are safe, and which two ids would name the same file.

corelab writes ``masks/<patient_id>.nii.gz``, ``qc/<patient_id>.png`` and ``records/<patient_id>.json``,
and a core lab copies those folders between Linux servers, Windows PCs and Macs. An id is refused
when any of these file systems would refuse it, hide it, rename it, or reach outside the folder
with it, because a silently renamed file is a result attached to the wrong patient:

- path separators and characters Windows forbids: ``/ \\ : * ? " < > |``;
- control and invisible format characters (newline, tab, zero-width space, right-to-left override):
  they cannot be seen in a table, so two ids that look equal would not be;
- a leading dot (a hidden file on Linux and macOS; ``..`` is the folder above);
- a trailing dot or a leading/trailing space (Windows drops them: ``P001.`` becomes ``P001``);
- names Windows reserves for devices, with or without an extension (``CON``, ``NUL.1``, ``COM1``);
- more than `MAX_ID_BYTES` bytes in UTF-8 (file names hold 255 bytes, the suffix needs some).

Two different ids collide when `file_name_key` maps them to the same text: macOS (APFS, HFS+) and
Windows (NTFS) compare names without regard to case by default, and macOS also treats Unicode
normalization forms as equal ("é" composed and "e" + combining accent). The key folds case and
applies NFKC, which also joins compatibility forms (full-width "Ｐ001" and "P001"): a few ids that
only one file system would tell apart are refused too, which is the safe side for a trial.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_ID_BYTES", "WINDOWS_RESERVED", "file_name_problem", "file_name_key", "why_same_file", "shown_id"]

MAX_ID_BYTES = 200

_FORBIDDEN = re.compile(r"[/\\:*?\"<>|]")
# Cc: controls (C0, DEL, C1); Cf: invisible format characters; Zl/Zp: line and paragraph separators;
# Co/Cs: private-use and lone surrogates, which no keyboard types and some file systems reject.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Co", "Cs"}
WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{device}{n}" for device in ("COM", "LPT") for n in (*"0123456789", "\u00b9", "\u00b2", "\u00b3")}
)


def shown_id(patient_id: str) -> str:
    """The id quoted for a sentence, with invisible characters written as \\uXXXX so a message
    stays on one line and shows what is really there.

    >>> shown_id("P001"), shown_id("P\\n1")
    ("'P001'", "'P\\\\u000a1'")
    """
    text = "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in _INVISIBLE_CATEGORIES else c for c in patient_id
    )
    return f"'{text}'"


def file_name_problem(patient_id: str) -> str:
    """"" when ``patient_id`` is a safe file name on Linux, macOS and Windows, else one sentence
    saying why not (see the module docstring for the rules).

    >>> file_name_problem("P-001_b")
    ''
    >>> file_name_problem("con")
    "patient_id 'con' is a name Windows reserves for a device (CON), so its files cannot be written; use another id."
    """
    who = f"patient_id {shown_id(patient_id)}"
    invisible = [c for c in patient_id if unicodedata.category(c) in _INVISIBLE_CATEGORIES]
    if invisible:
        return (
            f"{who} holds an invisible control character (U+{ord(invisible[0]):04X}), which cannot be part"
            " of a file name."
        )
    if _FORBIDDEN.search(patient_id) or patient_id in (".", ".."):
        return f"{who} cannot be used as a file name; avoid / \\ : * ? \" < > |."
    if patient_id.startswith("."):
        return f"{who} starts with a dot, which makes its output files hidden; remove the dot."
    if patient_id.endswith("."):
        return f"{who} ends with a dot, which Windows drops from file names; remove the dot."
    if patient_id != patient_id.strip():
        return f"{who} starts or ends with a space, which Windows drops from file names."
    # Windows reserves the device name whatever follows the first dot ("NUL.1" is NUL), and
    # ignores spaces before that dot.
    stem = patient_id.split(".", 1)[0].rstrip(" ").upper()
    if stem in WINDOWS_RESERVED:
        return (
            f"{who} is a name Windows reserves for a device ({stem}), so its files cannot be written;"
            " use another id."
        )
    size = len(patient_id.encode("utf-8"))
    if size > MAX_ID_BYTES:
        return (
            f"patient_id {shown_id(patient_id[:24] + '...')} is {size} bytes long, more than the"
            f" {MAX_ID_BYTES} bytes a file name can hold."
        )
    return ""


def file_name_key(patient_id: str) -> str:
    """The text two ids share when a case-insensitive or normalizing file system sees one name.

    >>> file_name_key("P001") == file_name_key("p001")
    True
    >>> file_name_key("Jos\\u00e9") == file_name_key("Jose\\u0301")
    True
    """
    # NFKC, then case folding, then NFKC again: Unicode's canonical caseless matching (D145),
    # since folding can undo a normalization ("\u0345" folds to a letter that composes).
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", patient_id).casefold())


def why_same_file(a: str, b: str) -> str:
    """How two different ids with one `file_name_key` differ, in words for the error sentence.

    >>> why_same_file("P001", "p001")
    'differs only in upper/lower case, which macOS and Windows file names ignore'
    """
    nfc = unicodedata.normalize("NFC", a), unicodedata.normalize("NFC", b)
    if nfc[0] == nfc[1]:
        return "the same letters stored in another Unicode form, which macOS file names treat as equal"
    if nfc[0].casefold() == nfc[1].casefold():
        return "differs only in upper/lower case, which macOS and Windows file names ignore"
    return "equal once Unicode compatibility forms (such as full-width letters) and case are folded"
