// envd's Process requests as the E2B SDKs send them (proto3 JSON from an
// HTTP client: untrusted): ParseStartRequest, ParseSelectorRequest,
// ParseSendInputRequest, ParseSendSignalRequest, ParseUpdateRequest, and the
// agent's ExecRequest a Start becomes.
//
// Input: one JSON text, given to every parser.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/e2b/process.h"
#include "fuzz/fuzz_check.h"
#include "proto/agent_proto.h"

using namespace wb::daemon::e2b;

namespace {

void CheckSelector(const ProcessSelector& s) {
  FUZZ_CHECK(s.pid > 0 ? s.tag.empty() : !s.tag.empty());
  FUZZ_CHECK(s.pid >= 0 && s.pid <= 0xffffffffll);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto r = ParseStartRequest(text); r.ok()) {
    FUZZ_CHECK(!r->cmd.empty());
    FUZZ_CHECK(r->cmd.find('\0') == std::string::npos);
    for (const auto& [k, v] : r->envs) {
      FUZZ_CHECK(!k.empty() && k.find('=') == std::string::npos);
      FUZZ_CHECK(k.find('\0') == std::string::npos && v.find('\0') == std::string::npos);
    }
    FUZZ_CHECK(r->rows <= 65535 && r->cols <= 65535);
    FUZZ_CHECK((r->rows == 0) == (r->cols == 0));
    // What the daemon sends the agent, the agent reads back the same.
    for (const char* user : {"", "user", "1000"}) {
      const wb::proto::ExecRequest x = StartExec(*r, user, "", 1000);
      FUZZ_CHECK(x.keep && !x.argv.empty() && x.argv[0] == r->cmd);
      FUZZ_CHECK(!x.cwd.empty() && x.cwd.front() == '/');
      auto again = wb::proto::ParseExecRequest(wb::proto::ToJson(x));
      FUZZ_CHECK(again.ok());
      FUZZ_CHECK(again->argv == x.argv && again->env == x.env && again->cwd == x.cwd);
      FUZZ_CHECK(again->tty == x.tty && again->rows == x.rows && again->tag == x.tag);
    }
  }
  if (auto s = ParseSelectorRequest(text); s.ok()) CheckSelector(*s);
  if (auto in = ParseSendInputRequest(text); in.ok()) {
    CheckSelector(in->process);
    // The bytes go back out as data events: they must encode.
    FUZZ_CHECK(!DataEventJson(in->pty ? "pty" : "stdin", in->data).empty());
  }
  if (auto k = ParseSendSignalRequest(text); k.ok()) {
    CheckSelector(k->process);
    FUZZ_CHECK(k->signal >= 1 && k->signal <= 64);
  }
  if (auto u = ParseUpdateRequest(text); u.ok()) {
    CheckSelector(u->process);
    if (u->size) {
      FUZZ_CHECK(u->size->rows >= 1 && u->size->rows <= 65535);
      FUZZ_CHECK(u->size->cols >= 1 && u->size->cols <= 65535);
    }
  }
  // A bytes field's decoder takes any text without reading past it.
  (void)DecodeProtoBytes(text, "bytes");
  return 0;
}
