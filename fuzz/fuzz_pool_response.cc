// What a pool client reads from the daemon: run responses and streamed chunks
// (ParseStreamFrame) and status replies (ParseStatus).
//
// Input: one JSON text, given to both parsers.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "proto/pool_proto.h"

using namespace wb::proto;

namespace {

bool SameStat(const ImageStat& a, const ImageStat& b) {
  return a.image == b.image && a.idle == b.idle && a.active == b.active && a.queued == b.queued &&
         a.max == b.max && a.total_created == b.total_created &&
         a.total_acquired == b.total_acquired && a.total_evicted == b.total_evicted &&
         a.hits == b.hits && a.misses == b.misses && a.failed_creations == b.failed_creations &&
         a.rejected_busy == b.rejected_busy && a.creating == b.creating &&
         a.peak_active == b.peak_active && a.driver == b.driver;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto f = ParseStreamFrame(text); f.ok()) {
    if (f->kind == StreamFrame::kFinal) {
      // The daemon's encoding of the response reads back the same.
      const RunResponse& r = f->final;
      const std::string canonical = ToJson(r);
      auto again = ParseStreamFrame(canonical);
      FUZZ_CHECK(again.ok());
      FUZZ_CHECK(again->kind == StreamFrame::kFinal);
      FUZZ_CHECK(ToJson(again->final) == canonical);
      const RunResponse& a = again->final;
      FUZZ_CHECK(a.stdout_data == r.stdout_data);
      FUZZ_CHECK(a.stderr_data == r.stderr_data);
      FUZZ_CHECK(a.exit_code == r.exit_code);
      FUZZ_CHECK(a.error == r.error);
      FUZZ_CHECK(a.timed_out == r.timed_out);
      FUZZ_CHECK(a.stdout_truncated == r.stdout_truncated);
      FUZZ_CHECK(a.stderr_truncated == r.stderr_truncated);
      FUZZ_CHECK(a.oom_killed == r.oom_killed);
      FUZZ_CHECK(a.sandbox == r.sandbox);
    } else {
      auto again = ParseStreamFrame(StreamChunkJson(f->kind == StreamFrame::kStderr, f->data));
      FUZZ_CHECK(again.ok());
      FUZZ_CHECK(again->kind == f->kind);
      FUZZ_CHECK(again->data == f->data);
    }
  }

  if (auto st = ParseStatus(text); st.ok()) {
    const std::string canonical = StatusJson(*st);
    auto again = ParseStatus(canonical);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(StatusJson(*again) == canonical);
    FUZZ_CHECK(again->size() == st->size());
    for (size_t i = 0; i < st->size(); ++i) FUZZ_CHECK(SameStat((*st)[i], (*again)[i]));
  }
  return 0;
}
