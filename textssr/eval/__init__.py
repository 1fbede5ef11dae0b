"""Evaluation of generated text crops: PP-OCRv4 recognition, Sen.ACC / NED, contact sheet."""
from textssr.eval.evaluate import (EvalError, evaluate_results, format_table, open_results, write_contact_sheet,
                                   write_metrics)
from textssr.eval.metrics import edit_distance, ned, score
from textssr.eval.ocr import Recognizer, orient_for_recognition

__all__ = ["EvalError", "Recognizer", "edit_distance", "evaluate_results", "format_table", "ned",
           "open_results", "orient_for_recognition", "score", "write_contact_sheet", "write_metrics"]
