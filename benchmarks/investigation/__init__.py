"""Investigation benchmark: a seeded security-operations world, questions, grader, SQL sandbox, ExCyTIn adapter."""

from benchmarks.investigation.database import QueryResult, ReadOnlyDatabase, open_database
from benchmarks.investigation.excytin import load_excytin, load_excytin_questions, write_excytin_questions
from benchmarks.investigation.generate import generate
from benchmarks.investigation.grader import Grade, Grader, answers_match, normalize_answer
from benchmarks.investigation.models import Question, SolutionStep, Task
from benchmarks.investigation.question_files import QuestionSet, SkippedRecord, read_question_set, read_questions, write_questions
from benchmarks.investigation.question_formats import load_question_file
from benchmarks.investigation.sandbox import InvestigationEnv, SandboxConfig, StepResult
from benchmarks.investigation.validate import validate

__all__ = [
    "Grade", "Grader", "InvestigationEnv", "QueryResult", "Question", "QuestionSet", "ReadOnlyDatabase", "SandboxConfig",
    "SkippedRecord", "SolutionStep", "StepResult", "Task", "answers_match", "generate", "load_excytin",
    "load_excytin_questions", "load_question_file", "normalize_answer", "open_database", "read_question_set",
    "read_questions", "validate", "write_excytin_questions", "write_questions",
]
