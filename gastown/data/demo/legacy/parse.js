// legacy/parse.js: still plain JavaScript
function parse(value) {
  return String(value);
}
module.exports = { parse };
