"""Validate an SBOM with independent tools from PyPI; exit 1 with the
validators' messages when it fails.

    validate_sbom.py cyclonedx FILE   # cyclonedx-python-lib, CycloneDX 1.6 JSON schema (strict)
    validate_sbom.py spdx FILE        # spdx-tools: parse + validate against SPDX 2.3
"""
import sys


def cyclonedx(path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    with open(path, encoding="utf-8") as f:
        err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(f.read())
    if err is not None:
        print(f"CycloneDX schema: {str(err)[:2000]}")
        return 1
    return 0


def spdx(path):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    doc = parse_file(path)
    msgs = validate_full_spdx_document(doc, "SPDX-2.3")
    for m in msgs[:20]:
        print(f"SPDX: {m.validation_message[:300]}")
    return 1 if msgs else 0


if __name__ == "__main__":
    kind, path = sys.argv[1], sys.argv[2]
    sys.exit({"cyclonedx": cyclonedx, "spdx": spdx}[kind](path))
