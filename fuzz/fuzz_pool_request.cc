// What the pool daemon reads from its socket: the 4-byte little-endian length
// header (DecodePoolLength) and the JSON request (ParsePoolRequest).
//
// Input: one JSON request text. Its first 4 bytes (when there are 4) are also
// read as a frame header.
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_check.h"
#include "proto/live_ops.h"
#include "proto/pool_proto.h"

using namespace wb::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (size >= 4) {
    uint32_t raw = uint32_t{data[0]} | (uint32_t{data[1]} << 8) | (uint32_t{data[2]} << 16) |
                   (uint32_t{data[3]} << 24);
    auto n = DecodePoolLength(data, kMaxRequest);
    FUZZ_CHECK(n.ok() == (raw <= kMaxRequest));
    if (n.ok()) FUZZ_CHECK(*n == raw);
  }
  // The daemon's own framing reads back as the length it wrote.
  std::string frame = EncodePoolFrame(text);
  auto len = DecodePoolLength(reinterpret_cast<const unsigned char*>(frame.data()), kMaxResponse);
  FUZZ_CHECK(len.ok() && *len == size);

  auto r = ParsePoolRequest(text);
  if (!r.ok()) return 0;
  if (r->op == Op::kLive) {
    // The socket server's second parse of the same text.
    auto live = ParseLiveOpRequest(text);
    if (live.ok()) FUZZ_CHECK(!live->sandbox.empty());
  }
  if (r->op == Op::kRun) {
    const RunRequest& run = r->run;
    FUZZ_CHECK(!run.cmd.empty());
    FUZZ_CHECK(!run.image || !run.image->empty());
    FUZZ_CHECK(!run.driver || *run.driver == "ns" || *run.driver == "vm");
    for (const auto& kv : run.env)
      FUZZ_CHECK(!kv.empty() && kv[0] != '=' && kv.find('=') != std::string::npos);
    // What the daemon then computes from the request (UBSan reports values
    // it cannot represent): the backstop timer of src/pool/agent_conn.cc, as
    // asio's nanoseconds, and the cgroup CPU quota of src/sandbox/cgroup.cc.
    if (run.timeout_ms) {
      auto backstop = std::chrono::milliseconds(run.timeout_ms) + std::chrono::seconds(10);
      volatile int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(backstop).count();
      (void)ns;
    }
    if (run.cpus) {
      volatile uint64_t quota = static_cast<uint64_t>(std::ceil(*run.cpus * 100000));
      (void)quota;
    }
  }
  // What the client sends is what the daemon reads: the request survives
  // ToJson and a second parse (compared through its canonical encoding, so
  // new fields are covered without naming them here).
  const std::string canonical = ToJson(*r);
  auto again = ParsePoolRequest(canonical);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->op == r->op);
  FUZZ_CHECK(ToJson(*again) == canonical);
  if (r->op == Op::kRun) {
    const RunRequest &a = r->run, &b = again->run;
    FUZZ_CHECK(a.image == b.image);
    FUZZ_CHECK(a.cmd == b.cmd);
    FUZZ_CHECK(a.env == b.env);
    FUZZ_CHECK(a.stdin_data == b.stdin_data);
  }
  return 0;
}
