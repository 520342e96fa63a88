// The MCP tests' daemon (tests/lib/daemon.mjs) in their own uid range
// (tests/uid_ranges.h, kMcpTest). WARMBOX_MCP_STATE_DIR gives the tests a
// state dir to reuse (development: an image store with base built).
import * as lib from '../lib/daemon.mjs'

export { SOURCE_DIR, BUILD_DIR, WARMBOX, skipReason, eventually } from '../lib/daemon.mjs'

const UID_BASE = 1780000000

export const { Daemon, pidsInUidRange } =
  lib.forSuite({ uidBase: UID_BASE, name: 'mcp', stateDir: process.env.WARMBOX_MCP_STATE_DIR })
