// Stands in for docker-modem's lib/ssh.js (see ../defer-dockerode-extras.ts): the SSH transport,
// and with it the ssh2 library, loads on first use of an ssh:// DOCKER_HOST instead of at start.
'use strict'
const { createRequire } = require('node:module')

const fromModem = createRequire(require.resolve('docker-modem'))
module.exports = function ssh (opt) {
  return fromModem('./ssh.js')(opt)
}
