#!/usr/bin/env python3
"""Translate the SAM template to plain CloudFormation, offline, and print it as JSON.

    .venv-infra/bin/python infra/translate.py infra/template.yaml [--code-uri s3://bucket/key]

Runs in the infra tool environment (.venv-infra: aws-sam-translator pins
pydantic ~=2.13, so it stays out of the project's own environment).
`--code-uri` replaces the function's local CodeUri with an S3 location, as
`sam package` would, so that CloudFormation (or moto) can create the function.
No AWS call is made: the template uses no managed policies, so the managed
policy map is empty.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The translator's managed-policy loader, without IAM (the template names none)."""

    def load(self) -> dict[str, str]:
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="translate.py")
    parser.add_argument("template")
    parser.add_argument("--code-uri", help="s3://bucket/key for every function's CodeUri")
    args = parser.parse_args(argv)
    # The translator fills AWS::Region into ARNs it builds; any region will do offline.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open(args.template, encoding="utf-8") as f:
        sam = yaml_parse(f.read())
    if args.code_uri:
        for resource in sam.get("Resources", {}).values():
            if resource.get("Type") == "AWS::Serverless::Function":
                resource.setdefault("Properties", {})["CodeUri"] = args.code_uri
                resource.pop("Metadata", None)
    try:
        cfn = transform(sam, {}, NoManagedPolicies())
    except InvalidDocumentException as exc:
        for cause in exc.causes:
            print(f"translate.py: {cause.message}", file=sys.stderr)
        return 1
    json.dump(cfn, sys.stdout, indent=1, sort_keys=True, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
