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

}  // namespace wb::proto
