// Stands in for dockerode's lib/session.js (see ../defer-dockerode-extras.ts): BuildKit sessions,
// and with them gRPC and protobuf, load on the first image build instead of at start.
'use strict'
const { createRequire } = require('node:module')

const fromDockerode = createRequire(require.resolve('dockerode'))
module.exports = function withSession (...args) {
  return fromDockerode('./session.js').apply(this, args)
}
