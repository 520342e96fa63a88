// The agent's exec channel as it arrives from a socket: a FrameDecoder fed in
// chunks, and the JSON payloads of 'E' (ExecRequest) and 'X' (ExecExit)
// frames parsed as the agent and the host do.
//
// Input: byte 0 chooses the chunk size (0: everything in one Feed, else
// 1-255 bytes per Feed); the rest is the byte stream.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_check.h"
#include "proto/agent_proto.h"

using namespace wb::proto;

namespace {

void CheckPayload(const Frame& f) {
  if (f.type == FrameType::kExec) {
    auto r = ParseExecRequest(f.payload);
    if (r.ok()) {
      FUZZ_CHECK(!r->argv.empty());
      const std::string canonical = ToJson(*r);
      auto again = ParseExecRequest(canonical);
      FUZZ_CHECK(again.ok() && ToJson(*again) == canonical);
    }
  } else if (f.type == FrameType::kExit) {
    auto e = ParseExecExit(f.payload);
    if (e.ok()) {
      const std::string canonical = ToJson(*e);
      auto again = ParseExecExit(canonical);
      FUZZ_CHECK(again.ok() && ToJson(*again) == canonical);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);

  FrameDecoder dec;
  std::string reencoded;  // every decoded frame, encoded again
  bool failed = false;
  for (size_t pos = 0; pos < stream.size() && !failed;) {
    size_t n = chunk == 0 ? stream.size() - pos : std::min(chunk, stream.size() - pos);
    auto r = dec.Feed(stream.substr(pos, n));
    pos += n;
    if (!r.ok()) {
      failed = true;
      // A failed decoder stays failed.
      FUZZ_CHECK(!dec.Feed("H").ok());
    }
    while (auto f = dec.Next()) {
      FUZZ_CHECK(IsKnownFrameType(static_cast<char>(f->type)));
      FUZZ_CHECK(f->payload.size() <= kMaxFrame);
      AppendFrame(reencoded, f->type, f->payload);
      CheckPayload(*f);
    }
  }
  // Without an error, the frames decoded and the bytes still buffered are
  // exactly the stream.
  if (!failed) {
    FUZZ_CHECK(reencoded.size() + dec.buffered() == stream.size());
    FUZZ_CHECK(stream.substr(0, reencoded.size()) == reencoded);
  } else {
    FUZZ_CHECK(stream.substr(0, reencoded.size()) == reencoded);
  }
  return 0;
}
