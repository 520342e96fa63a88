// The network tests' private "internet" (net_test, vm_net_test). No packet
// leaves the test's own namespaces: StartInternet moves the calling process
// into a new network namespace (D, "the host": the daemon's side) before it
// starts anything; a second one (I, "the internet") holds servers on the
// documentation ranges 198.51.100.0/24 and 203.0.113.0/24, a DNS server for
// *.test names, and stand-ins for the metadata address and private ranges.
// A veth pair links D (192.0.2.2, .3) and I (192.0.2.1); D's only route
// leads there.
//
// I's addresses: 198.51.100.10 (allowed.test), .11 (neighbour.test), .53
// (its DNS), 203.0.113.10 (denied.test, www.wild.test), 203.0.113.66,
// 169.254.169.254, 10.1.2.3 (private.test), 172.16.5.5, 192.168.7.7,
// 100.64.1.1. Every one answers HTTP on port 80 with "hello from ADDR".
#pragma once

#include <memory>
#include <string>

#include "base/child.h"
#include "base/fd.h"
#include "sandbox/driver.h"

namespace wb::testing {

struct Internet {
  std::string dir;
  ChildProcess server, dns;
  UniqueFd server_in;  // the server's stdin: it runs while this is open
};

// Builds it; failures are gtest fatal failures (check HasFatalFailure()).
// Call once per process, from its only thread.
void StartInternet(Internet& net);
void StopInternet(Internet& net);

// Whether a TCP connection to ip:port (from D) succeeds.
bool Connects(const char* ip, int port);

// `sh -c script` in sb (20 s timeout).
ExecOutcome InternetSh(Sandbox& sb, const std::string& script);
// What an HTTP GET of url (http://HOST[:PORT]/) answers in sb, "" when it
// failed. (busybox nc and nslookup: the static busybox's wget crashes in
// glibc's resolver.)
std::string InternetGet(Sandbox& sb, const std::string& url);
// Whether name resolves in sb (an address line in nslookup's answer).
bool InternetResolves(Sandbox& sb, const std::string& name);

}  // namespace wb::testing
