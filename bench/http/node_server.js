// Reference server for bench/http/run.sh: Node.js http, keep-alive, "hello".
const http = require('http');
const port = Number(process.argv[2] || 8080);
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 5 });
  res.end('hello');
});
server.keepAliveTimeout = 75000;
server.listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
