"""Courses."""

from __future__ import annotations

from typing import Any

from lms_domain.courses import authoring
from lms_domain.courses.schemas import CourseCreate, CourseListQuery, CourseOut, CoursePage, CourseUpdate
from server.api.registry import Api, Call

api = Api("courses", description="Courses: staff author them; learners browse the published ones.")


@api.get("/courses", summary="List courses", query=CourseListQuery, response=CoursePage)
async def list_courses(call: Call[Any, CourseListQuery]) -> CoursePage:
    async with call.rows() as projection:
        rows, cursor = await authoring.list_courses(session=projection, actor=call.actor, query=call.query)
        # Validating plain dicts runs in pydantic-core (Rust): faster than from_attributes
        # or model_construct on a hot list.
        return CoursePage.model_validate({"items": rows, "next_cursor": cursor})


@api.post("/courses", summary="Create a course", body=CourseCreate, response=CourseOut, status=201)
async def create_course(call: Call[CourseCreate, Any]) -> CourseOut:
    async with call.uow() as session:
        course = await authoring.create_course(session=session, actor=call.actor, data=call.body)
        return CourseOut.model_validate(course)


@api.get("/courses/{course_id}", summary="Get a course", response=CourseOut)
async def get_course(call: Call[Any, Any]) -> CourseOut:
    async with call.read() as session:
        course = await authoring.get_course(session=session, actor=call.actor, course_id=call.path_uuid("course_id"))
        return CourseOut.model_validate(course)


@api.patch("/courses/{course_id}", summary="Change a course", body=CourseUpdate, response=CourseOut)
async def update_course(call: Call[CourseUpdate, Any]) -> CourseOut:
    async with call.uow() as session:
        course = await authoring.update_course(
            session=session, actor=call.actor, course_id=call.path_uuid("course_id"), data=call.body
        )
        return CourseOut.model_validate(course)


@api.delete("/courses/{course_id}", summary="Delete a course", status=204)
async def delete_course(call: Call[Any, Any]) -> None:
    async with call.uow() as session:
        await authoring.delete_course(
            session=session, actor=call.actor, course_id=call.path_uuid("course_id"), clock=call.clock
        )
