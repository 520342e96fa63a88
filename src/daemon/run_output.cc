#include "daemon/run_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "daemon/http_api.h"

namespace wb::daemon {

namespace {

uint64_t DigitsOf(std::string_view data) {
  uint64_t n = 0;
  for (unsigned char c : data) n += c >= 100 ? 3 : c >= 10 ? 2 : 1;
  return n;
}

// "[" digits and commas "]".
uint64_t ArraySize(uint64_t bytes, uint64_t digits) { return 2 + digits + (bytes ? bytes - 1 : 0); }

constexpr std::string_view kStdoutKey = "{\"stdout\":";
constexpr std::string_view kStderrKey = ",\"stderr\":";

}  // namespace

Result<void> SpillBuffer::OpenFile() {
  // O_TMPFILE: a file with no name in dir, so a crash or a kill leaves
  // nothing behind and no other process can open it by path. Filesystems
  // without it (EOPNOTSUPP; EISDIR from kernels that predate it) get a
  // named file unlinked at once: the same, but for a window of a few
  // syscalls in which a crash leaves an empty file.
  int fd = ::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
    std::string path = dir_ + "/.run-output.XXXXXX";
    fd = ::mkostemp(path.data(), O_CLOEXEC);
    if (fd < 0) return Errno("mkostemp", path);
    ::unlink(path.c_str());
  } else if (fd < 0) {
    return Errno("open(O_TMPFILE) run output spill", dir_);
  }
  fd_.reset(fd);
  return Ok();
}

Result<void> SpillBuffer::Append(std::string_view data) {
  if (failed_) return *failed_;
  digits_ += DigitsOf(data);
  if (!fd_.valid()) {
    size_t room = threshold_ - std::min(threshold_, head_.size());
    size_t take = std::min(room, data.size());
    head_.append(data.substr(0, take));
    data.remove_prefix(take);
    if (data.empty()) return Ok();
    if (auto r = OpenFile(); !r.ok()) {
      failed_ = r.error();
      digits_ -= DigitsOf(data);
      return r;
    }
  }
  if (auto r = WriteAll(fd_.get(), data); !r.ok()) {
    // A short write may have landed part of data: the file's own size says
    // how much, so size() and the digits stay those of what is held.
    failed_ = r.error();
    off_t end = ::lseek(fd_.get(), 0, SEEK_END);
    uint64_t landed = end >= 0 ? static_cast<uint64_t>(end) - file_size_ : 0;
    landed = std::min<uint64_t>(landed, data.size());
    digits_ -= DigitsOf(data.substr(landed));
    file_size_ += landed;
    return r;
  }
  file_size_ += data.size();
  return Ok();
}

Result<void> SpillBuffer::ReadTo(uint64_t off, size_t n, std::string& out) const {
  if (off + n > size()) return Fail("read run output", std::to_string(off), "past the end");
  if (off < head_.size()) {
    size_t take = std::min<uint64_t>(n, head_.size() - off);
    out.append(head_, off, take);
    off += take;
    n -= take;
  }
  if (n == 0) return Ok();
  size_t at = out.size();
  out.resize(at + n);
  uint64_t file_off = off - head_.size();
  while (n > 0) {
    ssize_t got = ::pread(fd_.get(), out.data() + at, n, static_cast<off_t>(file_off));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Errno("pread run output spill", std::to_string(file_off));
    if (got == 0) return Fail("pread run output spill", std::to_string(file_off), "short file");
    at += got;
    n -= got;
    file_off += got;
  }
  return Ok();
}

Result<std::string> SpillBuffer::ReadAll() const {
  std::string out;
  WB_RETURN_IF_ERROR(ReadTo(0, size(), out));
  return out;
}

uint64_t SpillBuffer::NumberArraySize() const { return ArraySize(size(), digits_); }

ResponseEncoder::ResponseEncoder(Format format, const proto::RunResponse& resp,
                                 const RunOutput* output)
    : format_(format) {
  if (output) {
    sources_[0].buf = &output->out;
    sources_[1].buf = &output->err;
  } else {
    sources_[0].text = resp.stdout_data;
    sources_[1].text = resp.stderr_data;
  }
  // The rest of the response, encoded as ever from a copy without outputs:
  // whatever the encoders put after the outputs comes out the same.
  proto::RunResponse meta = resp;
  meta.stdout_data.clear();
  meta.stderr_data.clear();
  const bool pool = format_ == Format::kPool;
  std::string whole = pool ? proto::ToJson(meta) : HttpRunResponseJson(meta);
  const std::string empty_head = std::string(kStdoutKey) + (pool ? "[]" : "\"\"") +
                                 std::string(kStderrKey) + (pool ? "[]" : "\"\"");
  // Both encoders begin with exactly this (run_output_test checks it).
  tail_ = whole.substr(std::min(whole.size(), empty_head.size()));
  size_ = kStdoutKey.size() + kStderrKey.size() + tail_.size();
  for (const Source& s : sources_) {
    if (!pool) {
      size_ += 2 + (s.size() + 2) / 3 * 4;
    } else if (s.buf) {
      size_ += s.buf->NumberArraySize();
    } else {
      size_ += ArraySize(s.text.size(), DigitsOf(s.text));
    }
  }
}

Result<void> ResponseEncoder::EncodeFrom(const Source& src, std::string& piece) {
  size_t n = std::min<uint64_t>(kPieceBytes, src.size() - off_);
  std::string_view bytes;
  if (src.buf) {
    raw_.clear();
    WB_RETURN_IF_ERROR(src.buf->ReadTo(off_, n, raw_));
    bytes = raw_;
  } else {
    bytes = src.text.substr(off_, n);
  }
  if (format_ == Format::kPool) {
    proto::AppendByteNumbers(piece, bytes, off_ == 0);
  } else {
    piece += Base64Encode(bytes);  // off_ is a multiple of 3: pieces join
  }
  off_ += n;
  return Ok();
}

Result<bool> ResponseEncoder::Next(std::string& piece) {
  piece.clear();
  const bool pool = format_ == Format::kPool;
  auto open = [&] { piece += pool ? '[' : '"'; };
  auto close = [&] { piece += pool ? ']' : '"'; };
  while (piece.empty()) {
    switch (stage_) {
      case 0:
        piece += kStdoutKey;
        open();
        off_ = 0;
        stage_ = 1;
        break;
      case 1:
      case 3: {
        const Source& src = sources_[stage_ == 1 ? 0 : 1];
        if (off_ < src.size()) {
          WB_RETURN_IF_ERROR(EncodeFrom(src, piece));
          break;
        }
        close();
        if (stage_ == 1) {
          piece += kStderrKey;
          open();
          off_ = 0;
          stage_ = 3;
        } else {
          piece += tail_;
          stage_ = 5;
        }
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

Result<std::string> ResponseEncoder::All() {
  std::string out, piece;
  while (WB_TRY(Next(piece))) out += piece;
  return out;
}

}  // namespace wb::daemon
