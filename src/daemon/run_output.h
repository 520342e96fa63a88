// A one-shot run's captured output, held in bounded memory (issue 19,
// finding 10): each stream keeps its first kSpillThreshold bytes in memory
// and spills the rest to an unlinked file under the daemon's state dir; the
// response is then encoded and written piece by piece from there, never built
// whole. The bytes a client receives are exactly those of proto::ToJson (the
// socket) and HttpRunResponseJson (HTTP) for the same response: unit-tested
// in run_output_test.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "base/fd.h"
#include "proto/pool_proto.h"

namespace wb::daemon {

// Bytes of one stream kept in memory before the rest goes to a file. Most
// outputs are far smaller and never touch the disk; a run holds at most two
// of these (its two streams), so 128 concurrent runs hold 64 MiB at worst,
// and the agent's own frames (up to 64 KiB) fit many times over.
inline constexpr size_t kSpillThreshold = 256u << 10;
// Bytes of output read per piece of an encoded response: a multiple of 3
// (base64 encodes whole groups), at most 192 KiB of JSON per write.
inline constexpr size_t kPieceBytes = 48u << 10;

// One stream's bytes: the first `threshold` in memory, the rest in an
// O_TMPFILE file (close-on-exec; no name ever exists, so nothing is left
// behind whatever happens to the daemon). Move-only; closing the fd frees
// the file.
class SpillBuffer {
 public:
  explicit SpillBuffer(std::string dir = "", size_t threshold = kSpillThreshold)
      : dir_(std::move(dir)), threshold_(threshold) {}

  // Appends data. A failed write (disk full) is returned, and every later
  // Append fails the same way: the buffer then holds a prefix only.
  [[nodiscard]] Result<void> Append(std::string_view data);

  uint64_t size() const { return head_.size() + file_size_; }
  bool spilled() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }
  // Appends bytes [off, off + n) to out; off + n must not exceed size().
  [[nodiscard]] Result<void> ReadTo(uint64_t off, size_t n, std::string& out) const;
  // Everything, into one string (tests, small outputs).
  [[nodiscard]] Result<std::string> ReadAll() const;
  // The length of the bytes as a JSON number array ("[104,105]").
  uint64_t NumberArraySize() const;
  // The length of the bytes as a quoted base64 string.
  uint64_t Base64StringSize() const { return 2 + (size() + 2) / 3 * 4; }

 private:
  [[nodiscard]] Result<void> OpenFile();

  std::string dir_;
  size_t threshold_;
  std::string head_;
  UniqueFd fd_;
  uint64_t file_size_ = 0;
  uint64_t digits_ = 0;  // decimal digits of every byte so far
  std::optional<Error> failed_;
};

// A run's two streams (and the first failure to hold them).
struct RunOutput {
  explicit RunOutput(const std::string& dir, size_t threshold = kSpillThreshold)
      : out(dir, threshold), err(dir, threshold) {}
  SpillBuffer out, err;
};

// The response to a run, piece by piece: stdout and stderr come from output
// (resp's own stdout_data and stderr_data when output is null), the rest from
// resp. Reads the spill files as it goes.
class ResponseEncoder {
 public:
  enum class Format {
    kPool,  // the socket: byte arrays as JSON numbers (proto::ToJson)
    kHttp,  // POST /v1/run: base64 strings (HttpRunResponseJson)
  };
  ResponseEncoder(Format format, const proto::RunResponse& resp, const RunOutput* output);

  // The whole response's length in bytes, known before any piece.
  uint64_t size() const { return size_; }
  // The next piece into piece (replaced); false when there is none left.
  [[nodiscard]] Result<bool> Next(std::string& piece);
  // Every piece, concatenated (tests).
  [[nodiscard]] Result<std::string> All();

 private:
  // One stream's bytes from buf or, when null, from text.
  struct Source {
    const SpillBuffer* buf = nullptr;
    std::string_view text;
    uint64_t size() const { return buf ? buf->size() : text.size(); }
  };
  [[nodiscard]] Result<void> EncodeFrom(const Source& src, std::string& piece);

  Format format_;
  Source sources_[2];
  std::string tail_;  // after stderr: ,"exit_code":...}
  uint64_t size_ = 0;
  int stage_ = 0;     // 0 before stdout, 1 in stdout, 3 in stderr, 5 done
  uint64_t off_ = 0;  // into the current stream
  std::string raw_;   // scratch for a piece's bytes
};

}  // namespace wb::daemon
