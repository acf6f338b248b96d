"""The fake OpenAI-compatible server lives in the package (benchmarks use it too); tests import it from here."""

from benchmarks.fake_openai import Fault, FakeOpenAIServer, Reply, echo_replier

__all__ = ["FakeOpenAIServer", "Fault", "Reply", "echo_replier"]
