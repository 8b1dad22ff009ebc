"""botocore's service model for Rekognition (2016-06-27): the contract for the wire.

Loaded once per process from the installed botocore, never hand-copied, so request
validation and response shapes follow exactly what boto3 and the AWS CLI expect.
"""

from __future__ import annotations

import functools

import botocore.session
from botocore.model import OperationModel, ServiceModel

TARGET_PREFIX = "RekognitionService"


@functools.cache
def rekognition_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("rekognition", api_version="2016-06-27")


def operation_model(name: str) -> OperationModel | None:
    model = rekognition_model()
    return model.operation_model(name) if name in model.operation_names else None
