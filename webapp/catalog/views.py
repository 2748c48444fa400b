"""Catalogue pages: the model list, model detail and the upload forms."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render

from optimizers.errors import UnsafeInputError
from webapp.catalog.forms import DatasetUploadForm, ModelUploadForm
from webapp.catalog.models import Dataset, ModelEntry
from webapp.catalog.services import ensure_demo_models, upload_dataset, upload_model
from webapp.catalog.uploads import too_large_message, upload_too_large


@login_required
def model_list(request):
    ensure_demo_models()
    context = {
        "models": ModelEntry.objects.visible_to(request.user).select_related("team", "created_by"),
        "datasets": Dataset.objects.visible_to(request.user).select_related("team"),
    }
    return render(request, "catalog/model_list.html", context)


@login_required
def model_detail(request, pk: int):
    entry = get_object_or_404(ModelEntry.objects.visible_to(request.user).select_related("team"), pk=pk)
    return render(request, "catalog/model_detail.html", {"entry": entry})


def _upload_view(request, form_class, store, template: str, success):
    form = form_class(request.POST or None, request.FILES or None, user=request.user)
    if request.method != "POST":
        return render(request, template, {"form": form})
    if upload_too_large(request):
        form.is_valid()
        form.errors.pop("file", None)
        form.add_error("file", too_large_message())
    elif form.is_valid():
        data = form.cleaned_data
        try:
            obj = store(request.user, data["team"], data["name"], data["file"])
        except UnsafeInputError as error:
            form.add_error("file", str(error))
        else:
            return success(obj)
    return render(request, template, {"form": form}, status=400)


@login_required
def model_upload(request):
    def success(entry):
        messages.success(request, f"Model '{entry.name}' uploaded and checked.")
        return redirect("catalog:model_detail", pk=entry.pk)

    return _upload_view(request, ModelUploadForm, upload_model, "catalog/model_upload.html", success)


@login_required
def dataset_upload(request):
    def success(dataset):
        messages.success(request, f"Dataset '{dataset.name}' uploaded ({dataset.rows} rows).")
        return redirect("catalog:model_list")

    return _upload_view(request, DatasetUploadForm, upload_dataset, "catalog/dataset_upload.html", success)
