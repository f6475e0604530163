"""Integration with FastAPI (seed 000): Lifespan Management + Using in Routes.

Run it with ``uv run uvicorn --app-dir examples fastapi_app:app``.
"""

import os
from contextlib import asynccontextmanager
from itertools import count

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from eventbus import KafkaProducer
from hrms.events import EventType, create_notification_event


class Settings:
    """Stand-in for the service's settings object, which the seed uses without showing."""

    # read from the environment so the example runs anywhere (the seed: "kafka:9092")
    KAFKA_BOOTSTRAP_SERVERS = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    APP_NAME = "user-management-service"
    KAFKA_NOTIFICATION_TOPIC = os.environ.get("KAFKA_NOTIFICATION_TOPIC", "notification-queue")


settings = Settings()


class UserCreate(BaseModel):
    email: str
    first_name: str
    last_name: str


class User(UserCreate):
    id: int


class InMemoryDB:
    """Stand-in for the seed's (undefined) ``db``: keeps created users in a dict."""

    def __init__(self):
        self.users = {}
        self._ids = count(1)

    async def create_user(self, user_data: UserCreate) -> User:
        user = User(id=next(self._ids), **user_data.model_dump())
        self.users[user.id] = user
        return user


db = InMemoryDB()

# --- Lifespan Management ---

producer: KafkaProducer = None

@asynccontextmanager
async def lifespan(app: FastAPI):
    # Startup
    global producer
    producer = KafkaProducer(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        client_id=settings.APP_NAME
    )
    await producer.start()

    yield

    # Shutdown
    await producer.stop()

app = FastAPI(lifespan=lifespan)

# --- Using in Routes ---

router = APIRouter()

@router.post("/users")
async def create_user(user_data: UserCreate):
    # Create user in database
    user = await db.create_user(user_data)

    # Send notification event
    event = create_notification_event(
        source_service="user-management-service",
        recipient_email=user.email,
        subject="Welcome!",
        template_name="welcome_email",
        template_data={"name": user.first_name},
        event_type=EventType.USER_CREATED
    )

    await producer.send_event(
        topic=settings.KAFKA_NOTIFICATION_TOPIC,
        event=event
    )

    return user

app.include_router(router)  # the seed shows the router but not its registration
