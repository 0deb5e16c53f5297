"""factory_boy factories for the domain models."""

from __future__ import annotations

import factory

from deliveries.models import Delivery, Message
from webhooks import signing
from webhooks.models import Endpoint, EndpointSecret, EventType, Tenant


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    uid = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.uid.title())


class EventTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EventType

    name = factory.Sequence(lambda n: f"thing.happened{n}")


class EndpointFactory(factory.django.DjangoModelFactory):
    """An endpoint with a current secret. Use ``event_types=[...]`` to filter."""

    class Meta:
        model = Endpoint
        skip_postgeneration_save = True

    tenant = factory.SubFactory(TenantFactory)
    url = factory.Sequence(lambda n: f"https://receiver{n}.example.com/hook")

    @factory.post_generation
    def event_types(self, create: bool, extracted: list[EventType] | None, **kwargs: object) -> None:
        if create and extracted:
            self.event_types.set(extracted)

    @factory.post_generation
    def secret(self, create: bool, extracted: str | None, **kwargs: object) -> None:
        if create:
            EndpointSecret.objects.create(endpoint=self, secret=extracted or signing.generate_secret())


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    tenant = factory.SubFactory(TenantFactory)
    event_type = factory.SubFactory(EventTypeFactory)
    payload = factory.Dict({"n": factory.Sequence(int)})


class DeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Delivery

    message = factory.SubFactory(MessageFactory)
    tenant = factory.SelfAttribute("message.tenant")
    event_type = factory.SelfAttribute("message.event_type")
    endpoint = factory.SubFactory(EndpointFactory, tenant=factory.SelfAttribute("..message.tenant"))
