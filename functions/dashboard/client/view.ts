/** What the router needs from a view. */
export interface View {
  readonly heading: HTMLElement;
  readonly title: string;
  update?(args: Record<string, string>): void;
  stop(): void;
  kick(): void;
}
