"""``google.cloud.location.Locations``: the one location the emulator serves, per project.

Every client version (and its REST transport) offers ``get_location`` and
``list_locations``; tools call them to check a region before making queues.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from google.cloud.location import locations_pb2

from emulator import names
from emulator.errors import ApiError, not_found

_Generic: TypeAlias = "grpc.GenericRpcHandler[Any, Any]"


def _location(project: str, location_id: str) -> Any:
    return locations_pb2.Location(
        name=f"projects/{project}/locations/{location_id}",
        location_id=location_id,
        display_name=location_id,
    )


def build_handler(location_id: str) -> _Generic:
    """The Locations service: ``location_id`` exists in every project."""

    async def get_location(req: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            names.check_location(req.name)
            project, _, found = req.name.removeprefix("projects/").partition("/locations/")
            if found != location_id:
                raise not_found(f"Location {req.name} is not found or access is unauthorized.")
        except ApiError as e:
            await context.abort(e.code, e.message)
        return _location(project, location_id)

    async def list_locations(req: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        project = req.name.removeprefix("projects/")
        if not req.name.startswith("projects/") or not project or "/" in project:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Invalid resource name.")
        return locations_pb2.ListLocationsResponse(locations=[_location(project, location_id)])

    methods = {
        "GetLocation": grpc.unary_unary_rpc_method_handler(
            get_location,
            request_deserializer=locations_pb2.GetLocationRequest.FromString,
            response_serializer=locations_pb2.Location.SerializeToString,
        ),
        "ListLocations": grpc.unary_unary_rpc_method_handler(
            list_locations,
            request_deserializer=locations_pb2.ListLocationsRequest.FromString,
            response_serializer=locations_pb2.ListLocationsResponse.SerializeToString,
        ),
    }
    return grpc.method_handlers_generic_handler("google.cloud.location.Locations", methods)
