"""``stackshape export-generate``: write a ``custom_generate`` folder (SRS-ARGS, SRS-CD or SRS best-of-N) that
``model.generate(custom_generate=FOLDER_OR_REPO, trust_remote_code=True, ...)`` runs without hf_stackshape.

The folder holds ``README.md`` (the Hub card, every argument documented) and ``custom_generate/`` with
``generate.py``, ``requirements.txt`` and the library's own modules flattened (:mod:`hf_stackshape.utils.portable`).
Push it to a Hub repository to share it: ``hf upload me/srs-args OUT``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

DESCRIPTION = __doc__.strip().splitlines()[0]


@dataclass
class ExportGenerateArguments:
    """What to export and where."""

    method: str = field(metadata={"help": "The decoding method to export.", "choices": ["srs-args", "srs-cd", "srs-bon"]})
    output_dir: str = field(metadata={"help": "The folder to write (a local custom_generate repository)."})
    qhead: Optional[str] = field(
        default=None, metadata={"help": "srs-cd: the Q-head Hub id or folder used when generate gets no qhead=."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace the files of an existing export."})


def run(args: ExportGenerateArguments) -> int:
    from ..utils.portable import export_generate

    out = export_generate(args.method, args.output_dir, qhead=args.qhead, overwrite=args.overwrite)
    print(
        f"wrote {out}: model.generate(custom_generate={str(out)!r}, trust_remote_code=True, ...) "
        "(see its README.md for the arguments)"
    )
    return 0


DATACLASSES = (ExportGenerateArguments,)
