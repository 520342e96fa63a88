// The pool socket's process and file operations on live sandboxes
// (proto/live_ops.h): the request is checked, the agent connected and sent
// its first frame, the client answered {"ok":true}, and from then on the
// connection relays the agent's frames both ways. The client may send only
// the frame types its operation allows (stdin, close, resize; file data for
// a write); anything else ends the relay. A client that goes away closes the
// agent connection, which never kills a kept process (docs/protocol.md).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "daemon/live_service.h"
#include "proto/agent_proto.h"

namespace wb::daemon {

// Serves one operation whose request body is json (its "op" satisfied
// proto::IsLiveOp). Never throws; errors go to the client.
boost::asio::awaitable<void> ServeLiveOp(boost::asio::local::stream_protocol::socket& client,
                                         std::string_view json, LiveService& live);

// Copies agent frames to the client and the client's allowed frames to the
// agent until either side ends. Shared with tests.
boost::asio::awaitable<void> RelayFrames(boost::asio::local::stream_protocol::socket& client,
                                         boost::asio::local::stream_protocol::socket& agent,
                                         std::vector<proto::FrameType> client_may_send);

}  // namespace wb::daemon
