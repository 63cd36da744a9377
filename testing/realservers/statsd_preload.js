// Loaded with `node --require` before the Etsy StatsD daemon (testing only).
// The daemon's admin interface dumps counters/timers/gauges with util.inspect(), which by
// default cuts arrays after 100 items and nests only 2 levels deep. Tests parse those
// dumps, so make them complete. Nothing else about the daemon changes.
'use strict';
const util = require('util');
Object.assign(util.inspect.defaultOptions, {
  depth: null,
  maxArrayLength: null,
  maxStringLength: null,
  breakLength: Infinity,
  compact: true,
});
