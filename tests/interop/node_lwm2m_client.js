// An independent LwM2M client (Telefonica's lwm2m-node-lib, from npm) for interop tests.
// Usage: node node_lwm2m_client.js <coap port> <endpoint name>; prints "registered" once
// registered, de-registers on SIGTERM.
const client = require('lwm2m-node-lib').client;
const async = require('async');

const [port, endpoint] = [parseInt(process.argv[2], 10), process.argv[3]];
client.init({client: {lifetime: '300', version: '1.0', logLevel: 'FATAL', observe: {period: 500},
  ipProtocol: 'udp4', serverProtocol: 'udp4',
  formats: [{name: 'lightweightm2m/text', value: 1541}], writeFormat: 'lightweightm2m/text'}});

async.series([
  async.apply(client.registry.create, '/3/0'),
  async.apply(client.registry.setResource, '/3/0', '0', 'Telefonica-node'),
  async.apply(client.registry.setResource, '/3/0', '14', '+01:00'),
  async.apply(client.registry.create, '/3303/0'),
  async.apply(client.registry.setResource, '/3303/0', '5700', '21.5'),
], (error) => {
  if (error) { console.error('setup failed', error); process.exit(2); }
  client.register('127.0.0.1', port, null, endpoint, (error, info) => {
    if (error) { console.error('register failed', error); process.exit(1); }
    console.log('registered');
    process.on('SIGTERM', () => client.unregister(info, () => process.exit(0)));
  });
});
