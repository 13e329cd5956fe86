// How a review task looks: the completion's lines highlighted, each rated line marked.
import * as vscode from "vscode";
import type { Vote } from "./rating";

export interface Marked {
  firstLine: number; // document line of the completion's line 0
  lineCount: number;
  votes: Map<number, Vote>;
}

export class ReviewDecorations implements vscode.Disposable {
  private readonly completion = vscode.window.createTextEditorDecorationType({
    backgroundColor: new vscode.ThemeColor("diffEditor.insertedLineBackground"),
    isWholeLine: true,
  });
  private readonly up = ReviewDecorations.mark("  👍 rated");
  private readonly down = ReviewDecorations.mark("  👎 rated");

  private static mark(contentText: string): vscode.TextEditorDecorationType {
    return vscode.window.createTextEditorDecorationType({
      after: { contentText, color: new vscode.ThemeColor("descriptionForeground") },
    });
  }

  apply(editor: vscode.TextEditor, task: Marked): void {
    const document = editor.document;
    const line = (i: number) => document.lineAt(Math.min(task.firstLine + i, document.lineCount - 1)).range;
    // The marks go after the end of the line, the highlight over the whole of it.
    const end = (i: number) => new vscode.Range(line(i).end, line(i).end);
    const voted = (vote: Vote) => [...task.votes].filter(([, v]) => v === vote).map(([i]) => end(i));
    editor.setDecorations(this.completion, Array.from({ length: task.lineCount }, (_, i) => line(i)));
    editor.setDecorations(this.up, voted(1));
    editor.setDecorations(this.down, voted(-1));
  }

  dispose(): void {
    this.completion.dispose();
    this.up.dispose();
    this.down.dispose();
  }
}
