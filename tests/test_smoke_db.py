from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_learner


async def test_learner_round_trip(session: AsyncSession) -> None:
    learner = await make_learner(session, phone="0712345678")
    await session.commit()
    assert learner.account_no.isdigit() and len(learner.account_no) == 10
