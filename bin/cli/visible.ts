/**
 * Text that came from outside (error messages, parameters, names a server sends) must not drive
 * the operator's terminal: ESC and CSI sequences clear the screen or move the cursor, OSC sets
 * the title or writes the clipboard (OSC 52), \r overwrites a line with a fake one.
 *
 * Every control character but "\n" — C0 (tab and \r included), DEL (U+007F) and C1
 * (U+0080–U+009F, where U+009B is a one-byte CSI) — is written as a JSON-style escape, `\u001b`,
 * `\u007f`, `\u009b`. That form was chosen because it is also valid inside a JSON string: output
 * such as `status --json` stays JSON and parses back to the original text. (Text that already
 * holds the six characters `\u001b` reads the same; that is ambiguous but harmless.)
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g;
// eslint-disable-next-line no-control-regex
const HAS_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

const escape = (char: string): string => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** The text with every control character but "\n" made visible (see above). */
export function visible(text: string): string {
  return HAS_CONTROL.test(text) ? text.replace(CONTROL, escape) : text;
}

/**
 * A field printed inside a line structure (a table cell, `status    …`): newlines, with the
 * blanks around them, folded to one space, so a message cannot fake a line of its own such as
 * "status    COMPLETED"; then made visible.
 */
export function oneLine(text: string): string {
  return visible(text.replace(/\s*\n\s*/g, ' '));
}
