/**
 * DOM building. Safety rule: data from the API only ever reaches the page as text (textContent,
 * text nodes, attribute values via setAttribute), never as markup.
 */
export type Child = Node | string | number | null | undefined | false | readonly Child[];
type Listener = (event: Event) => unknown;
export type Attrs = Record<string, string | number | boolean | null | undefined | Listener | Partial<CSSStyleDeclaration>>;

/** Properties that must be set as properties: as attributes they only set the initial state. */
const BOOLEAN_PROPERTIES = new Set(['disabled', 'selected', 'checked']);

/** el('a', {href: '#/', class: 'x', onclick: fn}, 'text', child, [more]) */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === 'function') node.addEventListener(name.slice(2), value);
    // Through CSSOM: the page's CSP forbids style attributes, not style properties set by script.
    else if (typeof value === 'object') Object.assign(node.style, value);
    else if (BOOLEAN_PROPERTIES.has(name)) (node as unknown as Record<string, boolean>)[name] = Boolean(value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

/**
 * Replaces a node's children. Use this, never node.replaceChildren directly: the native one turns
 * null into the text "null" and arrays into "[object ...]", and el()-style children have both.
 */
export function fill<N extends Node & ParentNode>(node: N, ...children: Child[]): N {
  node.replaceChildren();
  append(node, children);
  return node;
}

function append(node: Node & ParentNode, children: readonly Child[]): void {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (typeof child === 'string' || typeof child === 'number') node.append(document.createTextNode(String(child)));
    else if (child instanceof Node) node.append(child);
    else append(node, child);
  }
}

/**
 * Replaces a container's children without losing keyboard focus: an element with
 * data-focus-key that had focus is focused again in the new content.
 */
export function replaceKeepingFocus(container: HTMLElement, children: Child[]): void {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.getAttribute('data-focus-key') : null;
  fill(container, children);
  if (key) container.querySelector<HTMLElement>(`[data-focus-key="${CSS.escape(key)}"]`)?.focus();
}

/** An element the page's markup must contain (page.ts). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}
