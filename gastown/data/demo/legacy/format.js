// legacy/format.js: still plain JavaScript
function format(value) {
  return String(value);
}
module.exports = { format };
