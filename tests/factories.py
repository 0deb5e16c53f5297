"""factory_boy factories for the domain models."""

from __future__ import annotations

import factory

from deliveries.models import Delivery, Message
from webhooks import signing
from webhooks.models import Endpoint, EndpointSecret, EventType, Tenant


class TenantFactory(factory.django.DjangoModelFactory[Tenant]):
    class Meta:
        model = Tenant

    uid = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.uid.title())


class EventTypeFactory(factory.django.DjangoModelFactory[EventType]):
    class Meta:
        model = EventType

    name = factory.Sequence(lambda n: f"thing.happened{n}")


# Post-generation hooks get the endpoint just made (not the factory).
def _set_event_types(
    endpoint: Endpoint, create: bool, extracted: list[EventType] | None, **kwargs: object
) -> None:
    if create and extracted:
        endpoint.event_types.set(extracted)


def _add_secret(endpoint: Endpoint, create: bool, extracted: str | None, **kwargs: object) -> None:
    if create:
        EndpointSecret.objects.create(endpoint=endpoint, secret=extracted or signing.generate_secret())


class EndpointFactory(factory.django.DjangoModelFactory[Endpoint]):
    """An endpoint with a current secret. Use ``event_types=[...]`` to filter."""

    class Meta:
        model = Endpoint
        skip_postgeneration_save = True

    tenant = factory.SubFactory(TenantFactory)
    url = factory.Sequence(lambda n: f"https://receiver{n}.example.com/hook")

    event_types = factory.PostGeneration(_set_event_types)
    secret = factory.PostGeneration(_add_secret)


class MessageFactory(factory.django.DjangoModelFactory[Message]):
    class Meta:
        model = Message

    tenant = factory.SubFactory(TenantFactory)
    event_type = factory.SubFactory(EventTypeFactory)
    payload = factory.Dict({"n": factory.Sequence(int)})


class DeliveryFactory(factory.django.DjangoModelFactory[Delivery]):
    class Meta:
        model = Delivery

    message = factory.SubFactory(MessageFactory)
    tenant = factory.SelfAttribute("message.tenant")
    event_type = factory.SelfAttribute("message.event_type")
    endpoint = factory.SubFactory(EndpointFactory, tenant=factory.SelfAttribute("..message.tenant"))
