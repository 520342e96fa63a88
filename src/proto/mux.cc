#include "proto/mux.h"

namespace wb::proto {
namespace {

void Put32(std::string& out, uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
               static_cast<char>(v)};
  out.append(b, 4);
}

uint32_t Get32(std::string_view s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

void Header(std::string& out, FrameType t, uint32_t len) {
  out.push_back(static_cast<char>(t));
  Put32(out, len);
}

}  // namespace

void AppendChannelData(std::string& out, uint32_t channel, std::string_view data) {
  Header(out, FrameType::kChannelData, static_cast<uint32_t>(4 + data.size()));
  Put32(out, channel);
  out.append(data);
}

void AppendChannelClose(std::string& out, uint32_t channel) {
  Header(out, FrameType::kChannelClose, 4);
  Put32(out, channel);
}

void AppendGrant(std::string& out, uint32_t channel, uint32_t count) {
  Header(out, FrameType::kChannelGrant, 8);
  Put32(out, channel);
  Put32(out, count);
}

Result<ChannelPayload> ParseChannelPayload(FrameType type, std::string_view payload) {
  const std::string what = std::string(1, static_cast<char>(type)) + " frame";
  if (payload.size() < 4) {
    return Fail(ErrorCode::kInvalidArgument, "parse " + what, "",
                "shorter than its 4-byte channel id");
  }
  ChannelPayload p{Get32(payload), payload.substr(4)};
  if (p.channel == 0) return Fail(ErrorCode::kInvalidArgument, "parse " + what, "", "channel 0");
  switch (type) {
    case FrameType::kChannelData:
      if (p.rest.empty()) {
        return Fail(ErrorCode::kInvalidArgument, "parse " + what, std::to_string(p.channel),
                    "no data");
      }
      break;
    case FrameType::kChannelClose:
      if (!p.rest.empty()) {
        return Fail(ErrorCode::kInvalidArgument, "parse " + what, std::to_string(p.channel),
                    "bytes after the channel id");
      }
      break;
    case FrameType::kChannelGrant:
      if (p.rest.size() != 4 || Get32(p.rest) == 0) {
        return Fail(ErrorCode::kInvalidArgument, "parse " + what, std::to_string(p.channel),
                    "the count must be 4 bytes, not 0");
      }
      break;
    default:
      return Fail(ErrorCode::kInvalidArgument, "parse " + what, "", "not a channel frame");
  }
  return p;
}

uint32_t GrantCount(const ChannelPayload& p) { return p.rest.size() == 4 ? Get32(p.rest) : 0; }

void AppendReset(std::string& out, FrameType type, std::string_view nonce, size_t pad_bytes) {
  out.append(pad_bytes, '\0');
  Header(out, type, static_cast<uint32_t>(nonce.size()));
  out.append(nonce);
}

bool PortDecoder::Accepts(char type, uint32_t len) const {
  if (!strict_) return type != 0 && IsKnownFrameType(type) && len <= kMaxFrame;
  switch (static_cast<FrameType>(type)) {
    case FrameType::kChannelData:
      return len >= 5 && len <= 4 + kMaxChunk;
    case FrameType::kChannelClose:
      return len == 4;
    case FrameType::kChannelGrant:
      return len == 8;
    case FrameType::kMuxReset:
      return from_ == Sender::kHost && len <= kMaxResetNonce;
    case FrameType::kMuxResetDone:
      return from_ == Sender::kAgent && len <= kMaxResetNonce;
    case FrameType::kFailure:
      return from_ == Sender::kAgent && len <= kMaxChunk;
    // A heartbeat and its answer (diagnostics beside the channels).
    case FrameType::kHeartbeat:
      return from_ == Sender::kHost && len == 0;
    case FrameType::kHeartbeatReply:
      return from_ == Sender::kAgent && len <= 4096;
    default:
      return false;
  }
}

void PortDecoder::Feed(std::string_view bytes) {
  buf_.append(bytes);
  for (;;) {
    // Padding between frames.
    while (pos_ < buf_.size() && buf_[pos_] == '\0') ++pos_;
    const size_t avail = buf_.size() - pos_;
    if (avail < kHeaderSize) break;
    const auto* h = reinterpret_cast<const unsigned char*>(buf_.data() + pos_);
    const uint32_t n = Get32(std::string_view(buf_.data() + pos_ + 1, 4));
    if (!Accepts(static_cast<char>(h[0]), n)) {
      // Out of step: the next byte may start a frame.
      ++pos_;
      ++skipped_;
      continue;
    }
    if (avail < kHeaderSize + n) break;
    ready_.push_back(Frame{static_cast<FrameType>(h[0]), buf_.substr(pos_ + kHeaderSize, n)});
    pos_ += kHeaderSize + n;
  }
  // Compact once the consumed prefix dominates, keeping Feed amortised O(n).
  if (pos_ > 0 && pos_ * 2 >= buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
}

std::optional<Frame> PortDecoder::Next() {
  if (ready_.empty()) return std::nullopt;
  Frame f = std::move(ready_.front());
  ready_.pop_front();
  return f;
}

uint64_t PortDecoder::TakeSkipped() {
  uint64_t n = skipped_;
  skipped_ = 0;
  return n;
}

void PortDecoder::Reset() {
  buf_.clear();
  pos_ = 0;
}

}  // namespace wb::proto
