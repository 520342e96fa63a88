// The exec channel's JSON messages on their own: ParseExecRequest (the agent
// reads it from the host) and ParseExecExit (the host reads it from a
// sandboxed agent, i.e. from untrusted code's side of the wall).
//
// Input: one JSON text, given to both parsers.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_check.h"
#include "proto/agent_proto.h"

using namespace wb::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto r = ParseExecRequest(text); r.ok()) {
    FUZZ_CHECK(!r->argv.empty());
    for (const auto& a : r->argv) FUZZ_CHECK(a.find('\0') == std::string::npos);
    for (const auto& e : r->env) {
      size_t eq = e.find('=');
      FUZZ_CHECK(eq != 0 && eq != std::string::npos);
    }
    // What the host sends is what the agent reads.
    const std::string canonical = ToJson(*r);
    auto again = ParseExecRequest(canonical);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(ToJson(*again) == canonical);
    FUZZ_CHECK(again->argv == r->argv);
    FUZZ_CHECK(again->env == r->env);
    FUZZ_CHECK(again->cwd == r->cwd);
    FUZZ_CHECK(again->user == r->user);
    FUZZ_CHECK(again->timeout_ms == r->timeout_ms);
    FUZZ_CHECK(again->output_cap == r->output_cap);
    FUZZ_CHECK(again->stdin == r->stdin);
  }

  if (auto e = ParseExecExit(text); e.ok()) {
    const std::string canonical = ToJson(*e);
    auto again = ParseExecExit(canonical);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(ToJson(*again) == canonical);
    FUZZ_CHECK(again->exit_code == e->exit_code);
    FUZZ_CHECK(again->signal == e->signal);
    FUZZ_CHECK(again->timed_out == e->timed_out);
    FUZZ_CHECK(again->stdout_truncated == e->stdout_truncated);
    FUZZ_CHECK(again->stderr_truncated == e->stderr_truncated);
    FUZZ_CHECK(again->error == e->error);
    FUZZ_CHECK(again->oom_killed == e->oom_killed);
  }
  return 0;
}
